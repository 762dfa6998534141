package client

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/mpreg/mpreg/bus"
	"github.com/mpreg/mpreg/schema"
)

// A client that does not follow watches each planner process once, however
// many of its requests that process plans, and stops when none is left.
func TestOneWatcherPerPlanner(t *testing.T) {
	srv, err := bus.StartServer(bus.ServerConfig{Host: "127.0.0.1", Port: -1})
	require.NoError(t, err)
	defer srv.Shutdown()
	nc, err := nats.Connect(srv.ClientURL())
	require.NoError(t, err)
	defer nc.Close()
	w, err := newPlannerWatch(nc, bus.NewSubjects("", "default"), nil, 10*time.Millisecond, time.Second, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	defer w.close()

	var dones []func()
	for i := range 5 {
		token, done := w.register(context.Background(), func(error) {})
		dones = append(dones, done)
		ack := &schema.PlannerAck{Cluster: "default", ID: "r", Planner: "p1", Incarnation: 7, Instance: "a"}
		if i == 4 { // another process of the same node
			ack = &schema.PlannerAck{Cluster: "default", ID: "r", Planner: "p1", Incarnation: 8, Instance: "b"}
		}
		w.planned(token, ack)
		w.planned(token, ack) // a second event changes nothing
	}
	waitFor(t, func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		n := 0
		for _, p := range w.planners {
			n += len(p.requests)
		}
		return len(w.planners) == 2 && n == 5
	})
	for _, done := range dones {
		done()
	}
	waitFor(t, func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return len(w.planners) == 0
	})
}

// waitFor polls cond until it holds, failing the test after 10 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
