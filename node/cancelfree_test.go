package node_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/mpreg/mpreg/internal/testcluster"
	"github.com/mpreg/mpreg/internal/testwait"
	"github.com/mpreg/mpreg/node"
)

// TestCancelFreesEverySlot: a request cancelled by id while its steps run
// on three nodes frees every run slot on every node within 100 ms.
func TestCancelFreesEverySlot(t *testing.T) {
	s := testcluster.Server(t)
	var nodes []*node.Node
	for _, id := range []string{"a", "b", "c"} {
		nodes = append(nodes, testcluster.Node(t, s.ClientURL(), testcluster.NodeConfig(t, id, "at-"+id), func(n *node.Node) {
			require.NoError(t, n.Register("hold", func(ctx context.Context) error {
				<-ctx.Done() // runs until cancelled
				return ctx.Err()
			}))
		}))
	}
	for _, n := range nodes {
		testcluster.WaitForRoute(t, n.Table(), "hold", []string{"at-c"}, "c")
	}
	nc := testcluster.Conn(t, s.ClientURL())
	done := make(chan *nats.Msg, 1)
	go func() {
		m, _ := nc.Request(rpcSubject, []byte(`{"id": "hold-3", "cmds": [
			{"name": "x", "fun": "hold", "locs": ["at-a"]},
			{"name": "y", "fun": "hold", "locs": ["at-b"]},
			{"name": "z", "fun": "hold", "locs": ["at-c"]}]}`), bound)
		done <- m
	}()
	testcluster.WaitFor(t, "a step running on every node", func() error {
		for _, n := range nodes {
			if n.Stats().Inflight != 1 {
				return fmt.Errorf("%s holds %d steps", n.ID(), n.Stats().Inflight)
			}
		}
		return nil
	})
	require.NoError(t, nc.Publish("mpreg.default.cancel", []byte(`{"id": "hold-3"}`)))
	require.NoError(t, nc.Flush())
	cancelled := time.Now()
	deadline := cancelled.Add(100 * time.Millisecond)
	for {
		busy := 0
		for _, n := range nodes {
			busy += int(n.Stats().Inflight)
		}
		if busy == 0 {
			break
		}
		require.True(t, time.Now().Before(deadline), "%d slots still held 100 ms after the cancel", busy)
		time.Sleep(time.Millisecond) // polling a counter, bounded by the deadline above
	}
	t.Logf("every slot free %v after the cancel", time.Since(cancelled))
	m := testwait.Recv(t, done, "the cancelled request's reply")
	require.NotNil(t, m)
	require.Contains(t, string(m.Data), "CANCELLED")
}
