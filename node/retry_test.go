package node_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mpreg/mpreg/client"
	"github.com/mpreg/mpreg/internal/testcluster"
	"github.com/mpreg/mpreg/internal/testwait"
	"github.com/mpreg/mpreg/node"
	"github.com/mpreg/mpreg/schema"
)

// An idempotent function registered with RetryAfter is tried on another
// node when an attempt does not answer in time, well within the request's
// budget; the stalled attempt is cancelled.
func TestRetryAfterOnStalledNode(t *testing.T) {
	s := testcluster.Server(t)
	var stalled atomic.Int64
	cancelled := make(chan struct{}, 64)
	testcluster.Node(t, s.ClientURL(), testcluster.NodeConfig(t, "stuck"), func(n *node.Node) {
		require.NoError(t, n.Register("lookup", func(ctx context.Context) string {
			stalled.Add(1)
			<-ctx.Done() // stands for a stalled node or a lost reply
			cancelled <- struct{}{}
			return "stuck"
		}, node.RetryAfter(100*time.Millisecond)))
	})
	testcluster.Node(t, s.ClientURL(), testcluster.NodeConfig(t, "fine"), func(n *node.Node) {
		require.NoError(t, n.Register("lookup", func() string { return "fine" }, node.RetryAfter(100*time.Millisecond)))
	})
	c := testcluster.Client(t, s.ClientURL(), client.Config{})
	testcluster.WaitForRoute(t, c.Table(), "lookup", nil, "stuck", "fine")
	p, _ := c.Table().Get("stuck")
	require.Equal(t, int64(100), p.Hello.RetryAfterMS["lookup"], "hello announces the retry-after")

	// The two nodes tie, so each call picks one at random: 12 calls reach
	// the stalled one with probability 1 - 2^-12.
	for i := 0; i < 12; i++ {
		start := time.Now()
		v, err := c.Call(testwait.Ctx(t), "lookup", nil, client.WithTimeout(5*time.Second))
		require.NoError(t, err)
		require.Equal(t, "fine", v)
		require.Less(t, time.Since(start), 2*time.Second, "retried after 100 ms, not at the 5 s budget")
	}
	require.Positive(t, stalled.Load(), "some call tried the stalled node first")
	testwait.Recv(t, cancelled, "the stalled attempt to be cancelled")
}

// A function that is not idempotent is never run twice: its step waits for
// its one attempt.
func TestNoRetryWithoutRetryAfter(t *testing.T) {
	s := testcluster.Server(t)
	var runs atomic.Int64
	testcluster.Node(t, s.ClientURL(), testcluster.NodeConfig(t, "only"), func(n *node.Node) {
		require.NoError(t, n.Register("once", func(ctx context.Context) error {
			runs.Add(1)
			<-ctx.Done()
			return ctx.Err()
		}))
	})
	testcluster.Node(t, s.ClientURL(), testcluster.NodeConfig(t, "other"), func(n *node.Node) {
		require.NoError(t, n.Register("once", func(ctx context.Context) error {
			runs.Add(1)
			<-ctx.Done()
			return ctx.Err()
		}))
	})
	c := testcluster.Client(t, s.ClientURL(), client.Config{})
	testcluster.WaitForRoute(t, c.Table(), "once", nil, "only", "other")
	_, err := c.Call(testwait.Ctx(t), "once", nil, client.WithTimeout(300*time.Millisecond))
	requireCode(t, err, schema.CodeTimeout)
	require.Equal(t, int64(1), runs.Load())
}
