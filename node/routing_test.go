package node_test

// docs/PROTOCOL.md §4 locs, §7 effective locs and §8 routing; §4 dataflow
// parallelism.

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mpreg/mpreg/client"
	"github.com/mpreg/mpreg/internal/testcluster"
	"github.com/mpreg/mpreg/internal/testwait"
	"github.com/mpreg/mpreg/node"
	"github.com/mpreg/mpreg/planner"
	"github.com/mpreg/mpreg/schema"
)

func TestLocRouting(t *testing.T) {
	srv := testcluster.Server(t)
	url := srv.ClientURL()
	plain := testcluster.Node(t, url, testcluster.NodeConfig(t, "plain"), func(n *node.Node) {
		require.NoError(t, n.Register("whoami", whoami(n.ID())))
	})
	// gpu: the loc comes from the function.
	testcluster.Node(t, url, testcluster.NodeConfig(t, "gpu"), func(n *node.Node) {
		require.NoError(t, n.Register("whoami", whoami(n.ID()), node.WithLocs("gpu")))
	})
	// both: node loc "ssd" plus function loc "gpu".
	testcluster.Node(t, url, testcluster.NodeConfig(t, "both", "ssd"), func(n *node.Node) {
		require.NoError(t, n.Register("whoami", whoami(n.ID()), node.WithLocs("gpu")))
	})
	c := testcluster.Client(t, url, client.Config{})
	nf := testcluster.Client(t, url, client.Config{NoFollow: true})
	for _, tb := range []interface {
		Eligible(string, []string) []string
	}{plain.Table(), c.Table()} {
		require.Eventually(t, func() bool { return len(tb.Eligible("whoami", nil)) == 3 }, bound, 5*time.Millisecond)
	}
	require.Equal(t, []string{"both", "gpu"}, c.Table().Eligible("whoami", []string{"gpu"}))
	require.Equal(t, []string{"both"}, c.Table().Eligible("whoami", []string{"gpu", "ssd"}))
	require.Equal(t, []string{"both"}, c.Table().Eligible("echo", []string{"ssd"}), "node locs apply to every function")

	ctx := testwait.Ctx(t)
	for i := range 12 {
		for _, cl := range []*client.Client{c, nf} { // direct exec, and through rpc
			who, err := client.CallAs[string](ctx, cl, "whoami", nil, client.WithLocs("gpu", "ssd"))
			require.NoError(t, err)
			require.Equal(t, "both", who, "call %d", i)
			who, err = client.CallAs[string](ctx, cl, "whoami", nil, client.WithLocs("gpu"))
			require.NoError(t, err)
			require.Contains(t, []string{"gpu", "both"}, who, "call %d", i)
		}
	}

	// No node has the loc: NO_ROUTE naming fun and locs, before anything runs.
	resp, err := nf.Run(ctx, &schema.Request{Cmds: []schema.Command{
		{Name: "a", Fun: "echo", Args: []any{1}},
		{Name: "x", Fun: "whoami", Locs: []string{"tpu", "gpu"}},
	}, Results: schema.ResultsAll})
	e := requireCode(t, err, schema.CodeNoRoute)
	require.Equal(t, "x", e.Step)
	require.Equal(t, "whoami", detail(t, e, "fun"))
	require.Equal(t, []any{"tpu", "gpu"}, detail(t, e, "locs"))
	require.NotNil(t, resp)

	_, err = c.Call(ctx, "nosuchfun", nil)
	require.ErrorIs(t, err, schema.ErrNoRoute)
}

// TestDataflowParallelism: a long branch does not delay an independent
// chain; the chain's last step runs while the long one still blocks.
func TestDataflowParallelism(t *testing.T) {
	srv := testcluster.Server(t)
	b := newBlocker()
	defer b.Release()
	chainDone := make(chan string, 1)
	evs := &testwait.Events{}
	cfg := testcluster.NodeConfig(t, "n1")
	cfg.Hooks.Observer = evs
	testcluster.Node(t, srv.ClientURL(), cfg, func(n *node.Node) {
		require.NoError(t, n.Register("block", b.Fn))
		require.NoError(t, n.Register("signal", func(s string) string { chainDone <- s; return s }))
	})
	c := testcluster.Client(t, srv.ClientURL(), client.Config{})

	type result struct {
		resp *schema.Response
		err  error
	}
	out := make(chan result, 1)
	go func() {
		resp, err := c.Run(context.Background(), &schema.Request{ID: "flow", Cmds: []schema.Command{
			{Name: "long", Fun: "block", Args: []any{"L"}},
			{Name: "c1", Fun: "echo", Args: []any{"x"}},
			{Name: "c2", Fun: "echos", Args: []any{"c1", "y"}},
			{Name: "c3", Fun: "echo", Args: []any{map[string]any{"$ref": "c2", "path": "/1"}}},
			{Name: "c4", Fun: "signal", Args: []any{"c3"}},
			{Name: "both", Fun: "echos", Args: []any{"long", "c4"}},
		}, TimeoutMS: 8000})
		out <- result{resp, err}
	}()
	require.Equal(t, "L", testwait.Recv(t, b.started, "the long branch to start"))
	require.Equal(t, "y", testwait.Recv(t, chainDone, "the short chain to finish while the long branch blocks"))
	select {
	case r := <-out:
		t.Fatalf("request finished before the long branch was released: %+v %v", r.resp, r.err)
	default:
	}
	releasedAt := time.Now()
	b.Release()
	r := testwait.Recv(t, out, "the request")
	require.NoError(t, r.err)
	require.Equal(t, map[string]any{"both": []any{"L", "y"}}, r.resp.Results)

	// The observer saw the chain's last step start before the long one was
	// released, and the join start after it.
	seen := map[string]planner.StepEvent{}
	require.Eventually(t, func() bool {
		for _, ev := range evs.All() {
			if ev.RequestID == "flow" {
				seen[ev.Step] = ev
			}
		}
		return len(seen) == 6
	}, bound, 5*time.Millisecond)
	for name, ev := range seen {
		require.Nil(t, ev.Err, name)
		require.Equal(t, "n1", ev.Node, name)
	}
	require.True(t, seen["c4"].Start.Before(releasedAt))
	require.False(t, seen["long"].Start.Add(seen["long"].Duration).Before(releasedAt))
	require.False(t, seen["both"].Start.Before(releasedAt))
}

// TestPlannerPrefersItself: with equal load, the node that plans a request
// runs an eligible step itself (§8: no network hop).
func TestPlannerPrefersItself(t *testing.T) {
	srv := testcluster.Server(t)
	url := srv.ClientURL()
	obs := map[string]*testwait.Events{"n1": {}, "n2": {}}
	var nodes []*node.Node
	for _, id := range []string{"n1", "n2"} {
		cfg := testcluster.NodeConfig(t, id)
		cfg.Hooks.Observer = obs[id]
		nodes = append(nodes, testcluster.Node(t, url, cfg, func(n *node.Node) {
			require.NoError(t, n.Register("whoami", whoami(n.ID())))
		}))
	}
	for _, n := range nodes {
		testcluster.WaitForRoute(t, n.Table(), "whoami", nil, "n1", "n2")
	}
	nc := testcluster.Conn(t, url)
	for range 20 {
		resp := rpcJSON(t, nc, `{"cmds": [{"name": "w", "fun": "whoami"}]}`)
		require.Nil(t, resp["error"])
	}
	total := 0
	for id, o := range obs {
		for _, ev := range o.All() {
			require.Equal(t, id, ev.Node, "the planner ran the step on itself")
			total++
		}
	}
	require.Equal(t, 20, total)
}
