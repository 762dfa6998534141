package client_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/mpreg/mpreg/client"
	"github.com/mpreg/mpreg/internal/testcluster"
	"github.com/mpreg/mpreg/schema"
)

// plannedBy runs req with progress and returns the node that planned it.
func plannedBy(t *testing.T, c *client.Client, req *schema.Request) string {
	t.Helper()
	r := *req
	r.Progress = true
	planner := ""
	_, err := c.RunWithEvents(context.Background(), &r, func(ev client.Event) {
		if ev.Planned != nil {
			planner = ev.Planned.Planner
		}
	})
	require.NoError(t, err)
	return planner
}

// A following client sends a request to the node that can run most of its
// steps, so that they run where they are planned.
func TestRunPlannedWhereItRuns(t *testing.T) {
	c := newCluster(t)
	cl := testcluster.Client(t, c.srv.ClientURL(), client.Config{})
	testcluster.WaitForRoute(t, cl.Table(), "whoami", []string{"gpu"}, "n2")

	gpuOnly := &schema.Request{Cmds: []schema.Command{{Name: "w", Fun: "whoami", Locs: []string{"gpu"}}}}
	// Two of three steps need n2; the first can run on either.
	most := &schema.Request{Cmds: []schema.Command{
		{Name: "a", Fun: "add", Args: []any{1, 2}},
		{Name: "b", Fun: "add", Args: []any{"a", 3}, Locs: []string{"gpu"}},
		{Name: "w", Fun: "whoami", Locs: []string{"gpu"}},
	}}
	for range 20 {
		require.Equal(t, "n2", plannedBy(t, cl, gpuOnly))
		require.Equal(t, "n2", plannedBy(t, cl, most))
	}

	// Without a view (NoFollow) the queue group chooses: both plan some.
	rpc := testcluster.Client(t, c.srv.ClientURL(), client.Config{NoFollow: true})
	seen := map[string]bool{}
	testcluster.WaitFor(t, "both nodes plan requests sent to the shared subject", func() error {
		seen[plannedBy(t, rpc, gpuOnly)] = true
		if len(seen) < 2 {
			return errNotYet
		}
		return nil
	})
}

// A node that the client's view still lists but that is gone does not
// fail the request: the client sends it again on the shared subject.
func TestRunPlannerGoneFallsBack(t *testing.T) {
	c := newCluster(t)
	nc3 := testcluster.Conn(t, c.srv.ClientURL())
	cfg := testcluster.NodeConfig(t, "n3", "gpu")
	testcluster.StartNode(t, nc3, cfg, register)
	cl := testcluster.Client(t, c.srv.ClientURL(), client.Config{DeadAfter: time.Minute})
	testcluster.WaitForRoute(t, cl.Table(), "whoami", []string{"gpu"}, "n2", "n3")

	nc3.Close() // gone without a goodbye: the client still routes to it
	// Once the server has dropped n3's subscriptions, a request to it meets
	// "no responders" (before that, NATS would deliver it to the closing
	// connection, as to a crashed process: the planner watch covers that).
	probe := testcluster.Conn(t, c.srv.ClientURL())
	testcluster.WaitFor(t, "the server to drop n3", func() error {
		_, err := probe.Request("mpreg.default.node.n3.rpc", nil, time.Second)
		if !errors.Is(err, nats.ErrNoResponders) {
			return fmt.Errorf("request to n3: %w", err)
		}
		return nil
	})
	req := &schema.Request{Cmds: []schema.Command{{Name: "w", Fun: "whoami", Locs: []string{"gpu"}}}}
	for range 20 {
		resp, err := cl.Run(context.Background(), req)
		require.NoError(t, err)
		require.Equal(t, "n2", resp.Results["w"])
	}
	require.Contains(t, cl.Table().Eligible("whoami", []string{"gpu"}), "n3", "the view still lists n3")
}

var errNotYet = errors.New("not yet")
