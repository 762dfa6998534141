package node_test

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/mpreg/mpreg/client"
	"github.com/mpreg/mpreg/codec"
	"github.com/mpreg/mpreg/internal/testcluster"
	"github.com/mpreg/mpreg/node"
	"github.com/mpreg/mpreg/schema"
)

// TestDryRun: a dry run runs nothing and says, for each step, what it waits
// for, which nodes could run it and which would; problems name what would
// stop it.
func TestDryRun(t *testing.T) {
	s := testcluster.Server(t)
	var calls atomic.Int64
	count := func(n *node.Node) {
		require.NoError(t, n.Register("work", func(x int64) int64 { calls.Add(1); return x }))
	}
	a := testcluster.Node(t, s.ClientURL(), testcluster.NodeConfig(t, "a", "gpu"), count)
	testcluster.Node(t, s.ClientURL(), testcluster.NodeConfig(t, "b", "gpu"), count)
	testcluster.WaitForRoute(t, a.Table(), "work", []string{"gpu"}, "a", "b")
	nc := testcluster.Conn(t, s.ClientURL())

	resp := rpcJSON(t, nc, `{"id": "d1", "dry_run": true, "cmds": [
		{"name": "x", "fun": "work", "args": [1], "locs": ["gpu"]},
		{"name": "y", "fun": "work", "args": ["x"]},
		{"name": "z", "fun": "nowhere", "args": ["x", "y"]}]}`)
	require.NotContains(t, resp, "error")
	require.Equal(t, map[string]any{}, resp["results"])
	plan := resp["plan"].([]any)
	require.Len(t, plan, 3)
	x, y, z := plan[0].(map[string]any), plan[1].(map[string]any), plan[2].(map[string]any)
	require.Equal(t, "x", x["name"])
	require.Equal(t, []any{"gpu"}, x["locs"])
	require.Equal(t, []any{}, x["deps"])
	require.Equal(t, []any{"a", "b"}, x["candidates"])
	require.Contains(t, []any{"a", "b"}, x["node"])
	require.Equal(t, true, x["routable"])
	require.Equal(t, []any{"x"}, y["deps"])
	require.Equal(t, []any{"a", "b"}, y["candidates"])
	require.Equal(t, []any{"x", "y"}, z["deps"])
	require.Equal(t, []any{}, z["candidates"])
	require.Nil(t, z["node"])
	require.Equal(t, false, z["routable"])
	problems := resp["problems"].([]any)
	require.Len(t, problems, 1)
	p := problems[0].(map[string]any)
	require.Equal(t, "NO_ROUTE", p["code"])
	require.Equal(t, "z", p["step"])
	require.Zero(t, calls.Load(), "a dry run runs nothing")

	// A cycle is a problem, not an error.
	resp = rpcJSON(t, nc, `{"dry_run": true, "cmds": [{"name": "p", "fun": "work", "args": ["q"]}, {"name": "q", "fun": "work", "args": ["p"]}]}`)
	require.NotContains(t, resp, "error")
	require.Equal(t, []any{}, resp["plan"])
	require.Equal(t, "INVALID_REQUEST", resp["problems"].([]any)[0].(map[string]any)["code"])

	// Through the Go client: the plan comes back typed.
	cl := testcluster.Client(t, s.ClientURL(), client.Config{NoFollow: true})
	r, err := cl.Run(context.Background(), &schema.Request{DryRun: true, Cmds: []schema.Command{{Name: "w", Fun: "work", Args: []any{1}}}})
	require.NoError(t, err)
	require.Len(t, r.Plan, 1)
	require.Equal(t, []string{"a", "b"}, r.Plan[0].Candidates)
	require.NotNil(t, r.Plan[0].Node)
	require.True(t, r.Plan[0].Routable)
	require.Empty(t, r.Problems)
	require.Zero(t, calls.Load())
}

// TestDryRunForeign: a caller from another NATS account may not read the
// membership, so its dry run says whether each step is routable, not
// where: no node id anywhere in the answer. A caller of the nodes' own
// account sees the nodes.
func TestDryRunForeign(t *testing.T) {
	f := newAuthzFixture(t) // node n1; alice, through the imports, may run add and whoami
	alice, local := f.dial(t, "alice"), f.dial(t, "node")
	dryRun := func(nc *nats.Conn, body string) (raw string, resp map[string]any) {
		m := request(t, nc, rpcSubject, []byte(body), jsonHeader())
		return string(m.Data), decodeAs(t, m, codec.JSONType)
	}
	const req = `{"id": "dry", "dry_run": true, "cmds": [
		{"name": "x", "fun": "add", "args": [1, 2]},
		{"name": "y", "fun": "whoami", "args": ["x"], "locs": ["gpu"]}]}`

	raw, resp := dryRun(alice, req)
	require.NotContains(t, raw, "n1", "a foreign dry run names no node")
	require.NotContains(t, resp, "error", raw)
	plan := resp["plan"].([]any)
	require.Len(t, plan, 2)
	require.Equal(t, map[string]any{"name": "x", "fun": "add", "locs": []any{}, "deps": []any{},
		"candidates": []any{}, "node": nil, "routable": true}, plan[0])
	require.Equal(t, map[string]any{"name": "y", "fun": "whoami", "locs": []any{"gpu"}, "deps": []any{"x"},
		"candidates": []any{}, "node": nil, "routable": false}, plan[1])
	problems := resp["problems"].([]any)
	require.Len(t, problems, 1)
	p := problems[0].(map[string]any)
	require.Equal(t, "NO_ROUTE", p["code"])
	require.Equal(t, "y", p["step"])

	raw, resp = dryRun(local, req)
	require.Contains(t, raw, "n1")
	x := resp["plan"].([]any)[0].(map[string]any)
	require.Equal(t, []any{"n1"}, x["candidates"])
	require.Equal(t, "n1", x["node"])
	require.Equal(t, true, x["routable"])

	// A request that does not plan: its problem names no node either.
	raw, resp = dryRun(alice, `{"dry_run": true, "cmds": [{"name": "p", "fun": "add", "args": ["q", 1]}, {"name": "q", "fun": "add", "args": ["p", 1]}]}`)
	require.NotContains(t, raw, "n1")
	require.Equal(t, "INVALID_REQUEST", resp["problems"].([]any)[0].(map[string]any)["code"])

	// Through the Go client.
	r, err := f.client(t, "alice", false).Run(context.Background(), &schema.Request{DryRun: true,
		Cmds: []schema.Command{{Name: "w", Fun: "whoami"}}})
	require.NoError(t, err)
	require.Equal(t, []schema.PlanStep{{Name: "w", Fun: "whoami", Locs: []string{}, Deps: []string{}, Candidates: []string{}, Routable: true}}, r.Plan)
	require.Empty(t, r.Problems)
	require.Zero(t, f.calls.Load(), "a dry run runs nothing")
}

// TestDryRunWarnings: a dry run warns of a string argument that looks like
// a mistyped reference (it runs as the string itself); the Go client reads
// the warnings too. A request without such strings has no "warnings".
func TestDryRunWarnings(t *testing.T) {
	s := testcluster.Server(t)
	n := testcluster.Node(t, s.ClientURL(), testcluster.NodeConfig(t, "a"), nil)
	testcluster.WaitForRoute(t, n.Table(), "echo", nil, "a")
	nc := testcluster.Conn(t, s.ClientURL())

	resp := rpcJSON(t, nc, `{"dry_run": true, "cmds": [{"name": "|first", "fun": "echo", "args": [1]},
		{"name": "|a", "fun": "echo", "args": ["|frist"]}, {"name": "|b", "fun": "echos", "kwargs": {"x": "|nope"}}]}`)
	require.NotContains(t, resp, "error")
	require.Equal(t, []any{
		map[string]any{"step": "|a", "key": "cmds[1].args[0]", "near": "|first",
			"message": `"|frist" names no command but is one edit from "|first": it is passed as the string itself`},
		map[string]any{"step": "|b", "key": "cmds[2].kwargs.x",
			"message": `"|nope" starts with "|" but names no command: it is passed as the string itself`},
	}, resp["warnings"])
	require.NotContains(t, rpcJSON(t, nc, `{"dry_run": true, "cmds": [{"name": "a", "fun": "echo", "args": ["hello"]}]}`), "warnings")

	c := testcluster.Client(t, s.ClientURL(), client.Config{})
	r, err := c.Run(context.Background(), &schema.Request{DryRun: true, Cmds: []schema.Command{{Name: "|a", Fun: "echo", Args: []any{"|frist"}}}})
	require.NoError(t, err)
	require.Equal(t, []schema.Warning{{Step: "|a", Key: "cmds[0].args[0]",
		Message: `"|frist" starts with "|" but names no command: it is passed as the string itself`}}, r.Warnings)
}
