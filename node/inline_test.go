package node_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/mpreg/mpreg/client"
	"github.com/mpreg/mpreg/codec"
	"github.com/mpreg/mpreg/internal/testcluster"
	"github.com/mpreg/mpreg/internal/testwait"
	"github.com/mpreg/mpreg/node"
	"github.com/mpreg/mpreg/schema"
)

// TestInlineFunctions: a function registered Inline answers like any other
// through exec (a client's direct call) and as a planner's local step,
// with kwargs, panics recovered and the node serving on.
func TestInlineFunctions(t *testing.T) {
	srv := testcluster.Server(t)
	n := testcluster.Node(t, srv.ClientURL(), testcluster.NodeConfig(t, "n1"), func(n *node.Node) {
		require.NoError(t, n.Register("shout", func(s string, times int) string { return strings.Repeat(strings.ToUpper(s), times) },
			node.WithParams("s", "times"), node.Inline()))
		require.NoError(t, n.Register("crash", func() any { panic("inline kaboom") }, node.Inline()))
		require.NoError(t, n.Register("expired", func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }, node.Inline()))
	})
	c := testcluster.Client(t, srv.ClientURL(), client.Config{})
	nc := testcluster.Conn(t, srv.ClientURL())
	testcluster.WaitForRoute(t, c.Table(), "shout", nil, "n1")
	ctx := testwait.Ctx(t)

	for i := range 3 {
		v, err := c.Call(ctx, "shout", []any{"ab"}, client.WithKwargs(map[string]any{"times": i + 1}))
		require.NoError(t, err)
		require.Equal(t, strings.Repeat("AB", i+1), v)

		_, err = c.Call(ctx, "crash", nil)
		e := requireCode(t, err, schema.CodeFunctionPanic)
		require.Contains(t, e.Message, "inline kaboom")
	}

	// A body over 64 KiB is decoded on a worker, not on the subscription.
	long := strings.Repeat("y", 100<<10)
	v, err := c.Call(ctx, "shout", []any{long, 1})
	require.NoError(t, err)
	require.Equal(t, strings.ToUpper(long), v)

	resp := rpcJSON(t, nc, `{"cmds": [
		{"name": "a", "fun": "shout", "args": ["x", 2]},
		{"name": "b", "fun": "shout", "args": ["a"], "kwargs": {"times": 2}}]}`)
	require.Nil(t, resp["error"])
	require.Equal(t, map[string]any{"b": "XXXX"}, resp["results"])

	resp = rpcJSON(t, nc, `{"cmds": [{"name": "p", "fun": "crash"}]}`)
	require.Equal(t, "FUNCTION_PANIC", wireError(t, resp)["code"])

	// An inline function that waits still gets its deadline: through exec
	// and as a local step.
	_, err = c.Call(ctx, "expired", nil, client.WithTimeout(100*time.Millisecond))
	requireCode(t, err, schema.CodeTimeout)
	resp = rpcJSON(t, nc, `{"cmds": [{"name": "w", "fun": "expired"}], "timeout_ms": 100}`)
	require.Equal(t, "TIMEOUT", wireError(t, resp)["code"])

	v, err = c.Call(ctx, "echo", []any{"still serving"})
	require.NoError(t, err)
	require.Equal(t, "still serving", v)
	st := n.Stats()
	require.GreaterOrEqual(t, st.StepErrors, int64(6))
}

// TestInlineWithoutSlotGoesToWorker: when every run slot is taken an inline
// step waits on a worker, not on the subscription's goroutine, so the node
// still reads its exec subject (and answers OVERLOADED past its queue).
func TestInlineWithoutSlotGoesToWorker(t *testing.T) {
	srv := testcluster.Server(t)
	b := newBlocker()
	defer b.Release()
	cfg := testcluster.NodeConfig(t, "n1")
	cfg.Limits.MaxInflight, cfg.Limits.MaxQueue = 1, 1
	testcluster.Node(t, srv.ClientURL(), cfg, func(n *node.Node) {
		require.NoError(t, n.Register("block", b.Fn))
		require.NoError(t, n.Register("twice", func(x int) int { return 2 * x }, node.Inline()))
	})
	c := testcluster.Client(t, srv.ClientURL(), client.Config{})
	nc := testcluster.Conn(t, srv.ClientURL())
	blocked := execAsync(t, nc, "n1", map[string]any{"cluster": "default", "id": "r/block", "fun": "block", "args": []any{"run"}, "kwargs": map[string]any{}})
	testwait.Recv(t, b.started, "the blocking step to hold the only slot")
	queued := execAsync(t, nc, "n1", map[string]any{"cluster": "default", "id": "r/twice", "fun": "twice", "args": []any{21}, "kwargs": map[string]any{}})
	waitForInflight(t, c.Table(), "n1", 2) // the inline step queued
	resp := execJSON(t, nc, "n1", map[string]any{"cluster": "default", "id": "r/over", "fun": "twice", "args": []any{1}, "kwargs": map[string]any{}})
	require.Equal(t, "OVERLOADED", wireError(t, resp)["code"], "the subscription is not stuck behind the queued inline step")

	b.Release()
	m := testwait.Recv(t, queued, "the queued inline step's reply")
	require.NotNil(t, m)
	require.Equal(t, int64(42), decodeAs(t, m, codec.JSONType)["result"])
	m = testwait.Recv(t, blocked, "the blocking step's reply")
	require.NotNil(t, m)
	require.Equal(t, "run", decodeAs(t, m, codec.JSONType)["result"])
}

// TestCloseWaitsForInlineStep: Close returns only after an inline function
// that is running has returned, as it does for functions on workers.
func TestCloseWaitsForInlineStep(t *testing.T) {
	srv := testcluster.Server(t)
	started := make(chan struct{}, 1)
	var finished atomic.Bool
	n := testcluster.Node(t, srv.ClientURL(), testcluster.NodeConfig(t, "n1"), func(n *node.Node) {
		require.NoError(t, n.Register("linger", func(ctx context.Context) {
			started <- struct{}{}
			<-ctx.Done()
			time.Sleep(50 * time.Millisecond) // cleaning up after the cancel
			finished.Store(true)
		}, node.Inline()))
	})
	nc := testcluster.Conn(t, srv.ClientURL())
	data, err := codec.JSON.Encode(map[string]any{"cluster": "default", "id": "r/1", "fun": "linger", "args": []any{}, "kwargs": map[string]any{}})
	require.NoError(t, err)
	sub, err := nc.SubscribeSync(nats.NewInbox())
	require.NoError(t, err)
	require.NoError(t, nc.PublishMsg(&nats.Msg{Subject: execSubject("n1"), Reply: sub.Subject, Data: data, Header: jsonHeader()}))
	testwait.Recv(t, started, "the inline step to start")
	n.Close()
	require.True(t, finished.Load(), "Close returned while the inline step still ran")
	m, err := sub.NextMsg(bound)
	require.NoError(t, err)
	require.Equal(t, "NODE_UNAVAILABLE", wireError(t, decodeAs(t, m, codec.JSONType))["code"])
}
