package node_test

import (
	"context"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mpreg/mpreg/client"
	"github.com/mpreg/mpreg/internal/testcluster"
	"github.com/mpreg/mpreg/internal/testwait"
	"github.com/mpreg/mpreg/node"
	"github.com/mpreg/mpreg/planner"
	"github.com/mpreg/mpreg/schema"
)

// TestBusyNodeIsOverloaded: 40 calls at once to the only node, which runs 2
// steps and queues 4: the 34 it cannot take fail OVERLOADED with the wait
// to suggest (the node is busy, not gone), never NODE_UNAVAILABLE; the 6
// it took succeed.
func TestBusyNodeIsOverloaded(t *testing.T) {
	s := testcluster.Server(t)
	block := make(chan struct{})
	var once sync.Once
	release := func() { once.Do(func() { close(block) }) }
	t.Cleanup(release)
	cfg := testcluster.NodeConfig(t, "tight")
	cfg.Limits.MaxInflight, cfg.Limits.MaxQueue = 2, 4
	n := testcluster.Node(t, s.ClientURL(), cfg, func(n *node.Node) {
		require.NoError(t, n.Register("hold", func(ctx context.Context) error {
			select {
			case <-block:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}))
	})
	c := testcluster.Client(t, s.ClientURL(), client.Config{})
	testcluster.WaitForRoute(t, c.Table(), "hold", nil, "tight")
	ctx := testwait.Ctx(t)

	const calls = 40
	errs := make(chan error, calls)
	for range calls {
		go func() {
			_, err := c.Call(ctx, "hold", nil)
			errs <- err
		}()
	}
	for range calls - 6 {
		err := testwait.Recv(t, errs, "a refusal")
		e := requireCode(t, err, schema.CodeOverloaded)
		assert.Equal(t, "tight", e.Node)
		assert.Equal(t, planner.DefaultOverloadRetryAfter.Milliseconds(), detail(t, e, "retry_after_ms"))
		assert.Equal(t, []any{"tight"}, detail(t, e, "tried"))
		assert.Contains(t, e.Message, "node tight is running 2 steps with 4 queued, its limits max_inflight=2 (the node's --max-inflight) and max_queue=4 (the node's --max-queue)")
	}
	require.Equal(t, int64(6), n.Stats().Inflight, "the node holds the 6 it took")
	release()
	for range 6 {
		require.NoError(t, testwait.Recv(t, errs, "a call the node took"))
	}
}
