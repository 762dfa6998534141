package node_test

// docs/PROTOCOL.md §4 (requests, references, results) and §5 (responses), run
// against real nodes on an embedded nats-server.

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/mpreg/mpreg/bus"
	"github.com/mpreg/mpreg/client"
	"github.com/mpreg/mpreg/internal/testcluster"
	"github.com/mpreg/mpreg/internal/testwait"
	"github.com/mpreg/mpreg/node"
	"github.com/mpreg/mpreg/schema"
)

// pair is two nodes on one server: n1 without locs and n2 with "dataset-a",
// both offering the standard test functions, and a following client.
type pair struct {
	srv    *bus.Server
	n1, n2 *node.Node
	c      *client.Client
	nc     *nats.Conn // a plain connection for raw requests
}

func newPair(t *testing.T) *pair {
	t.Helper()
	p := &pair{srv: testcluster.Server(t)}
	url := p.srv.ClientURL()
	p.n1 = testcluster.Node(t, url, testcluster.NodeConfig(t, "n1"), registerStd)
	p.n2 = testcluster.Node(t, url, testcluster.NodeConfig(t, "n2", "dataset-a"), registerStd)
	p.c = testcluster.Client(t, url, client.Config{})
	p.nc = testcluster.Conn(t, url)
	testcluster.WaitForRoute(t, p.n1.Table(), "echos", []string{"dataset-a"}, "n2")
	testcluster.WaitForRoute(t, p.n2.Table(), "add", nil, "n1", "n2")
	testcluster.WaitForRoute(t, p.c.Table(), "add", nil, "n1", "n2")
	return p
}

func (p *pair) run(t *testing.T, req *schema.Request) (*schema.Response, error) {
	t.Helper()
	return p.c.Run(testwait.Ctx(t), req)
}

func TestReadmeExample(t *testing.T) {
	p := newPair(t)
	resp, err := p.run(t, &schema.Request{ID: "readme-1", Cmds: []schema.Command{
		{Name: "|first", Fun: "echo", Args: []any{"hi there!"}},
		{Name: "|second", Fun: "echo", Args: []any{"|first"}},
		{Name: "|third", Fun: "echos", Args: []any{"|first", "AND ME TOO"}, Kwargs: map[string]any{}, Locs: []string{"dataset-a"}},
	}, TimeoutMS: 5000, Results: schema.ResultsSinks})
	require.NoError(t, err)
	require.Equal(t, "readme-1", resp.ID)
	require.Nil(t, resp.Error)
	require.Equal(t, map[string]any{"|second": "hi there!", "|third": []any{"hi there!", "AND ME TOO"}}, resp.Results)

	// The same request as raw JSON: the §5 response shape exactly.
	body := rpcJSON(t, p.nc, readme)
	require.Equal(t, []string{"id", "results"}, sortedKeys(body), "a success has id and results, no error")
	require.Equal(t, "readme-1", body["id"])
	require.Equal(t, map[string]any{"|second": "hi there!", "|third": []any{"hi there!", "AND ME TOO"}}, body["results"])
}

func TestRequestIDAssignedWhenAbsent(t *testing.T) {
	p := newPair(t)
	a := rpcJSON(t, p.nc, `{"cmds":[{"name":"a","fun":"echo","args":[1]}]}`)
	b := rpcJSON(t, p.nc, `{"cmds":[{"name":"a","fun":"echo","args":[1]}]}`)
	require.NotEmpty(t, a["id"])
	require.NotEmpty(t, b["id"])
	require.NotEqual(t, a["id"], b["id"], "assigned ids are unique")
}

func TestThreeReturnOne(t *testing.T) {
	p := newPair(t)
	resp, err := p.run(t, &schema.Request{Cmds: []schema.Command{
		{Name: "a", Fun: "echo", Args: []any{int64(1)}},
		{Name: "b", Fun: "echo", Args: []any{int64(20)}, Locs: []string{"dataset-a"}},
		{Name: "c", Fun: "inc", Args: []any{int64(299)}},
		{Name: "total", Fun: "sum3", Args: []any{"a", "b", "c"}},
	}})
	require.NoError(t, err)
	require.Equal(t, map[string]any{"total": int64(321)}, resp.Results, "only the sink comes back")
}

func TestFourReturnOne(t *testing.T) {
	p := newPair(t)
	resp, err := p.run(t, &schema.Request{Cmds: []schema.Command{
		{Name: "|w", Fun: "echo", Args: []any{"w"}},
		{Name: "|x", Fun: "echo", Args: []any{"x"}, Locs: []string{"dataset-a"}},
		{Name: "|y", Fun: "echo", Args: []any{"y"}},
		{Name: "|z", Fun: "echo", Args: []any{"z"}, Locs: []string{"dataset-a"}},
		{Name: "word", Fun: "concat4", Args: []any{"|w", "|x", "|y", "|z"}},
	}})
	require.NoError(t, err)
	require.Equal(t, map[string]any{"word": "wxyz"}, resp.Results)
}

func TestKwargsReferences(t *testing.T) {
	p := newPair(t)
	resp, err := p.run(t, &schema.Request{Cmds: []schema.Command{
		{Name: "one", Fun: "echo", Args: []any{int64(40)}},
		{Name: "two", Fun: "echo", Kwargs: map[string]any{"x": int64(2)}, Locs: []string{"dataset-a"}},
		// Kwargs referring to other commands are dependencies too.
		{Name: "sum", Fun: "add", Kwargs: map[string]any{"a": "one", "b": "two"}},
		// A kwarg and a positional arg together.
		{Name: "mixed", Fun: "add", Args: []any{"sum"}, Kwargs: map[string]any{"b": "one"}},
	}, Results: schema.ResultsAll})
	require.NoError(t, err)
	require.Equal(t, map[string]any{"one": int64(40), "two": int64(2), "sum": int64(42), "mixed": int64(82)}, resp.Results)
}

// TestRefPathAcrossNodes selects into a map and a list result produced on
// another node, with JSON Pointer escapes, at depth inside args and kwargs.
func TestRefPathAcrossNodes(t *testing.T) {
	srv := testcluster.Server(t)
	url := srv.ClientURL()
	producer := testcluster.Node(t, url, testcluster.NodeConfig(t, "producer"), func(n *node.Node) {
		require.NoError(t, n.Register("profile", func(user string) map[string]any {
			return map[string]any{
				"user": user, "pets": []any{map[string]any{"name": "rex"}, map[string]any{"name": "tom"}},
				"a/b": "slash", "m~n": "tilde", "": "empty-key",
			}
		}, node.WithLocs("producer-only")))
		require.NoError(t, n.Register("letters", func() []string { return []string{"p", "q", "r"} }, node.WithLocs("producer-only")))
	})
	consumer := testcluster.Node(t, url, testcluster.NodeConfig(t, "consumer"), func(n *node.Node) {
		require.NoError(t, n.Register("pack", node.RawFunc(func(_ context.Context, args []any, kwargs map[string]any) (any, error) {
			return map[string]any{"args": args, "kwargs": kwargs}, nil
		}), node.WithLocs("consumer-only")))
	})
	c := testcluster.Client(t, url, client.Config{})
	testcluster.WaitForRoute(t, consumer.Table(), "profile", []string{"producer-only"}, "producer")
	testcluster.WaitForRoute(t, producer.Table(), "pack", []string{"consumer-only"}, "consumer")

	resp, err := c.Run(testwait.Ctx(t), &schema.Request{Cmds: []schema.Command{
		{Name: "p", Fun: "profile", Args: []any{"ann"}, Locs: []string{"producer-only"}},
		{Name: "l", Fun: "letters", Locs: []string{"producer-only"}},
		{Name: "out", Fun: "pack", Locs: []string{"consumer-only"}, Args: []any{
			map[string]any{"$ref": "p", "path": "/pets/1/name"},
			[]any{"nested", map[string]any{"deep": map[string]any{"$ref": "p", "path": "/a~1b"}}},
			map[string]any{"$ref": "l", "path": "/2"},
			map[string]any{"$ref": "l"}, // no path: the whole result
		}, Kwargs: map[string]any{
			"tilde": map[string]any{"$ref": "p", "path": "/m~0n"},
			"empty": map[string]any{"$ref": "p", "path": "/"},
			"list":  []any{map[string]any{"$ref": "p", "path": "/user"}},
		}},
	}})
	require.NoError(t, err)
	require.Equal(t, map[string]any{"out": map[string]any{
		"args": []any{"tom", []any{"nested", map[string]any{"deep": "slash"}}, "r", []any{"p", "q", "r"}},
		"kwargs": map[string]any{
			"tilde": "tilde", "empty": "empty-key", "list": []any{"ann"},
		},
	}}, resp.Results, "a $ref is resolved at any depth, with ~1 and ~0 unescaped")
}

func TestReferenceRules(t *testing.T) {
	p := newPair(t)
	t.Run("string naming no command is a literal", func(t *testing.T) {
		resp, err := p.run(t, &schema.Request{Cmds: []schema.Command{
			{Name: "a", Fun: "echos", Args: []any{"|nobody", "a-not-quite", "A"}},
		}})
		require.NoError(t, err)
		require.Equal(t, []any{"|nobody", "a-not-quite", "A"}, resp.Results["a"])
	})
	t.Run("only top-level strings refer", func(t *testing.T) {
		resp, err := p.run(t, &schema.Request{Cmds: []schema.Command{
			{Name: "a", Fun: "echo", Args: []any{"A"}},
			{Name: "b", Fun: "echos", Args: []any{"a", []any{"a"}, map[string]any{"k": "a"}}},
		}})
		require.NoError(t, err)
		require.Equal(t, map[string]any{"b": []any{"A", []any{"a"}, map[string]any{"k": "a"}}}, resp.Results)
	})
	t.Run("$ref path missing in the result is INVALID_ARGUMENT", func(t *testing.T) {
		resp, err := p.run(t, &schema.Request{Cmds: []schema.Command{
			{Name: "a", Fun: "echo", Args: []any{map[string]any{"k": int64(1)}}},
			{Name: "b", Fun: "echo", Args: []any{map[string]any{"$ref": "a", "path": "/nope"}}},
		}})
		e := requireCode(t, err, schema.CodeInvalidArgument)
		require.Equal(t, "b", e.Step)
		require.Equal(t, map[string]any{"a": map[string]any{"k": int64(1)}}, resp.Results, "partial results")
	})
	t.Run("malformed pointer is INVALID_REQUEST before anything runs", func(t *testing.T) {
		before := p.n1.Stats().Steps + p.n2.Stats().Steps
		_, err := p.run(t, &schema.Request{Cmds: []schema.Command{
			{Name: "a", Fun: "echo", Args: []any{int64(1)}},
			{Name: "b", Fun: "echo", Args: []any{map[string]any{"$ref": "a", "path": "no-slash"}}},
		}})
		requireCode(t, err, schema.CodeInvalidRequest)
		require.Equal(t, before, p.n1.Stats().Steps+p.n2.Stats().Steps, "no step ran")
	})
}

func TestOrderIndependence(t *testing.T) {
	p := newPair(t)
	forward := []schema.Command{
		{Name: "a", Fun: "echo", Args: []any{int64(1)}},
		{Name: "b", Fun: "inc", Args: []any{"a"}},
		{Name: "c", Fun: "add", Args: []any{"a", "b"}, Locs: []string{"dataset-a"}},
		{Name: "d", Fun: "add", Args: []any{"c", "b"}},
	}
	var want map[string]any
	for _, order := range [][]int{{0, 1, 2, 3}, {3, 2, 1, 0}, {2, 0, 3, 1}} {
		cmds := make([]schema.Command, len(order))
		for i, j := range order {
			cmds[i] = forward[j]
		}
		resp, err := p.run(t, &schema.Request{Cmds: cmds, Results: schema.ResultsAll})
		require.NoError(t, err, "order %v", order)
		if want == nil {
			want = resp.Results
			require.Equal(t, map[string]any{"a": int64(1), "b": int64(2), "c": int64(3), "d": int64(5)}, want)
		}
		require.Equal(t, want, resp.Results, "order %v", order)
	}
}

func TestResultsAllAndSinks(t *testing.T) {
	p := newPair(t)
	cmds := []schema.Command{
		{Name: "a", Fun: "echo", Args: []any{"A"}},
		{Name: "b", Fun: "echo", Args: []any{"a"}},
		{Name: "c", Fun: "echo", Args: []any{"C"}},
	}
	all, err := p.run(t, &schema.Request{Cmds: cmds, Results: schema.ResultsAll})
	require.NoError(t, err)
	require.Equal(t, map[string]any{"a": "A", "b": "A", "c": "C"}, all.Results)
	sinks, err := p.run(t, &schema.Request{Cmds: cmds})
	require.NoError(t, err)
	require.Equal(t, map[string]any{"b": "A", "c": "C"}, sinks.Results, "default is sinks")

	body := rpcJSON(t, p.nc, `{"cmds":[{"name":"a","fun":"echo","args":[null]}],"results":"all"}`)
	results, ok := body["results"].(map[string]any)
	require.True(t, ok)
	v, ok := results["a"]
	require.True(t, ok, "a null result is present")
	require.Nil(t, v)
}
