package node_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mpreg/mpreg/client"
	"github.com/mpreg/mpreg/internal/testcluster"
	"github.com/mpreg/mpreg/node"
	"github.com/mpreg/mpreg/schema"
)

// TestTrace: with "trace": true the response has one entry per step
// attempt, naming the node that ran it, with times from the planner's
// receipt and the run and queue times the running node measured.
func TestTrace(t *testing.T) {
	s := testcluster.Server(t)
	for _, id := range []string{"a", "b", "c"} {
		testcluster.Node(t, s.ClientURL(), testcluster.NodeConfig(t, id, "at-"+id), func(n *node.Node) {
			require.NoError(t, n.Register("tag", func(x string) string { return x + "@" + n.ID() }))
			require.NoError(t, n.Register("nap", func(ctx context.Context) error {
				select { // a step that takes 30 ms, measured where it runs
				case <-time.After(30 * time.Millisecond):
					return nil
				case <-ctx.Done():
					return ctx.Err()
				}
			}))
		})
	}
	nc := testcluster.Conn(t, s.ClientURL())
	resp := rpcJSON(t, nc, `{"trace": true, "cmds": [
		{"name": "x", "fun": "tag", "args": ["1"], "locs": ["at-a"]},
		{"name": "y", "fun": "tag", "args": ["x"], "locs": ["at-b"]},
		{"name": "z", "fun": "tag", "args": ["y"], "locs": ["at-c"]},
		{"name": "bad", "fun": "tag", "args": [1], "locs": ["at-a"]}]}`)
	e := wireError(t, resp)
	require.Equal(t, "INVALID_ARGUMENT", e["code"])
	require.Contains(t, resp, "trace", "a failed request is traced too")

	resp = rpcJSON(t, nc, `{"trace": true, "cmds": [
		{"name": "x", "fun": "tag", "args": ["1"], "locs": ["at-a"]},
		{"name": "y", "fun": "tag", "args": ["x"], "locs": ["at-b"]},
		{"name": "z", "fun": "tag", "args": ["y"], "locs": ["at-c"]}]}`)
	require.Nil(t, resp["error"])
	require.Equal(t, map[string]any{"z": "1@a@b@c"}, resp["results"])
	trace := resp["trace"].([]any)
	require.Len(t, trace, 3)
	var prevStart int64 = -1
	for i, want := range []struct{ step, node string }{{"x", "a"}, {"y", "b"}, {"z", "c"}} {
		e := trace[i].(map[string]any)
		require.Equal(t, want.step, e["step"])
		require.Equal(t, "tag", e["fun"])
		require.Equal(t, want.node, e["node"], "step %s", want.step)
		require.EqualValues(t, 1, e["attempt"])
		require.Equal(t, "ok", e["code"])
		start := e["start_us"].(int64)
		require.Greater(t, start, prevStart, "a step starts after the one it reads")
		prevStart = start
		require.GreaterOrEqual(t, e["queue_us"].(int64), int64(0))
		require.GreaterOrEqual(t, e["run_us"].(int64), int64(0))
	}

	// run_us is the time the function ran on its node, planner or not.
	for _, at := range []string{"at-a", "at-b", "at-c"} {
		resp = rpcJSON(t, nc, `{"trace": true, "cmds": [{"name": "n", "fun": "nap", "locs": ["`+at+`"]}]}`)
		require.Nil(t, resp["error"])
		e := resp["trace"].([]any)[0].(map[string]any)
		require.GreaterOrEqual(t, e["run_us"].(int64), int64(30000), "%s: %v", at, e)
		require.Less(t, e["run_us"].(int64), int64(5_000_000))
	}

	// Without trace, no trace key.
	resp = rpcJSON(t, nc, `{"cmds": [{"name": "x", "fun": "tag", "args": ["1"]}]}`)
	require.NotContains(t, resp, "trace")

	// Through the Go client, typed.
	cl := testcluster.Client(t, s.ClientURL(), client.Config{NoFollow: true})
	r, err := cl.Run(context.Background(), &schema.Request{Trace: true, Cmds: []schema.Command{{Name: "q", Fun: "tag", Args: []any{"2"}, Locs: []string{"at-b"}}}})
	require.NoError(t, err)
	require.Len(t, r.Trace, 1)
	require.Equal(t, "b", r.Trace[0].Node)
	require.Equal(t, "ok", r.Trace[0].Code)

	// A call with WithTrace, from a following client too, and with an
	// argument that equals the function's name.
	follower := testcluster.Client(t, s.ClientURL(), client.Config{})
	var calls client.Trace
	v, err := follower.Call(context.Background(), "tag", []any{"tag"}, client.WithLocs("at-c"), client.WithTrace(&calls))
	require.NoError(t, err)
	require.Equal(t, "tag@c", v)
	require.Len(t, calls.Entries, 1)
	require.Equal(t, "c", calls.Entries[0].Node)
	require.False(t, calls.Truncated)
}
