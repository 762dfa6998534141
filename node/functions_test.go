package node_test

// Typed Go functions behind docs/PROTOCOL.md §5 codes: INVALID_ARGUMENT,
// FUNCTION_ERROR, FUNCTION_PANIC, TIMEOUT and CANCELLED, and §3 value
// fidelity (int64, binary) in both codecs.

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/mpreg/mpreg/client"
	"github.com/mpreg/mpreg/codec"
	"github.com/mpreg/mpreg/internal/testcluster"
	"github.com/mpreg/mpreg/internal/testwait"
	"github.com/mpreg/mpreg/node"
	"github.com/mpreg/mpreg/schema"
)

func TestInvalidArguments(t *testing.T) {
	srv := testcluster.Server(t)
	testcluster.Node(t, srv.ClientURL(), testcluster.NodeConfig(t, "n1"), registerStd)
	c := testcluster.Client(t, srv.ClientURL(), client.Config{})
	testcluster.WaitForRoute(t, c.Table(), "add", nil, "n1")
	ctx := testwait.Ctx(t)

	v, err := c.Call(ctx, "add", []any{40, 2})
	require.NoError(t, err)
	require.Equal(t, int64(42), v)

	cases := []struct {
		name   string
		fun    string
		args   []any
		kwargs map[string]any
		param  string // details.param, "" when the count is at fault
		msg    string // a fragment of the message
	}{
		{"missing argument", "add", []any{1}, nil, "b", "missing argument b"},
		{"too many arguments", "add", []any{1, 2, 3}, nil, "", "takes 2 arguments, got 3"},
		{"wrong type", "add", []any{"forty", 2}, nil, "a", "a:"},
		{"wrong type by kwarg", "add", []any{1}, map[string]any{"b": []any{}}, "b", "b:"},
		{"unknown kwarg", "add", []any{1, 2}, map[string]any{"c": 3}, "c", `no parameter "c"`},
		{"kwarg given twice", "add", []any{1, 2}, map[string]any{"a": 3}, "a", "given twice"},
		{"fraction into int", "inc", []any{1.5}, nil, "args[0]", "args[0]"},
		{"no kwargs without names", "inc", nil, map[string]any{"x": 1}, "x", `no parameter "x"`},
		{"variadic wrong type", "join", []any{"-", "a", 7}, nil, "args[2]", "args[2]"},
		{"struct unknown field", "greet", nil, map[string]any{"name": "ann", "age": 3}, "age", `"age"`},
		{"null into int", "add", []any{nil, 2}, nil, "a", "add: a: want int64, got null"},
		{"fraction into int, encoding/json's words", "add", []any{1, 2.5}, nil, "b", "add: b: want int64, got number 2.5"},
		{"struct field of the wrong type", "greet", nil, map[string]any{"name": 5}, "", "name: want string, got number"},
		{"typed func, unknown field", "area", nil, map[string]any{"w": 1, "d": 2}, "d", `no parameter "d"`},
		{"typed func, wrong type", "area", nil, map[string]any{"w": "wide"}, "", "w: want float64, got string"},
		{"typed func, two positional", "double", []any{1, 2}, nil, "", "one argument, got 2 positional"},
		{"typed func, kwargs for a scalar", "double", nil, map[string]any{"x": 1}, "x", `no parameter "x"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var opts []client.CallOption
			if tc.kwargs != nil {
				opts = append(opts, client.WithKwargs(tc.kwargs))
			}
			_, err := c.Call(ctx, tc.fun, tc.args, opts...)
			e := requireCode(t, err, schema.CodeInvalidArgument)
			require.Contains(t, e.Message, tc.msg)
			if tc.param != "" {
				require.Equal(t, tc.param, detail(t, e, "param"))
			}
			require.Equal(t, "n1", e.Node)
		})
	}
}

func TestTypedFunctionShapes(t *testing.T) {
	srv := testcluster.Server(t)
	testcluster.Node(t, srv.ClientURL(), testcluster.NodeConfig(t, "n1"), registerStd)
	c := testcluster.Client(t, srv.ClientURL(), client.Config{})
	testcluster.WaitForRoute(t, c.Table(), "greet", nil, "n1")
	ctx := testwait.Ctx(t)

	t.Run("struct parameter by kwargs", func(t *testing.T) {
		s, err := client.CallAs[string](ctx, c, "greet", nil, client.WithKwargs(map[string]any{"name": "ann", "times": 2}))
		require.NoError(t, err)
		require.Equal(t, "hello ann hello ann ", s)
	})
	t.Run("struct parameter by one positional map", func(t *testing.T) {
		s, err := client.CallAs[string](ctx, c, "greet", []any{map[string]any{"name": "bo", "times": 1}})
		require.NoError(t, err)
		require.Equal(t, "hello bo ", s)
	})
	t.Run("variadic", func(t *testing.T) {
		s, err := client.CallAs[string](ctx, c, "join", []any{"-", "a", "b", "c"})
		require.NoError(t, err)
		require.Equal(t, "a-b-c", s)
		s, err = client.CallAs[string](ctx, c, "join", []any{"-"})
		require.NoError(t, err)
		require.Equal(t, "", s)
	})
	t.Run("raw function sees args and kwargs as sent", func(t *testing.T) {
		v, err := c.Call(ctx, "raw", []any{int64(1), "two", []byte{3}}, client.WithKwargs(map[string]any{"k": map[string]any{"n": nil}}))
		require.NoError(t, err)
		require.Equal(t, map[string]any{"args": []any{int64(1), "two", []byte{3}}, "kwargs": map[string]any{"k": map[string]any{"n": nil}}}, v)
	})
	t.Run("function without result returns null", func(t *testing.T) {
		v, err := c.Call(ctx, "nothing", nil)
		require.NoError(t, err)
		require.Nil(t, v)
	})
	t.Run("typed func by kwargs and by one positional map", func(t *testing.T) {
		v, err := c.Call(ctx, "area", nil, client.WithKwargs(map[string]any{"w": 2, "h": 2.5}))
		require.NoError(t, err)
		require.Equal(t, 5.0, v)
		v, err = c.Call(ctx, "area", []any{map[string]any{"W": 3, "H": 2}})
		require.NoError(t, err)
		require.Equal(t, 6.0, v, "a float result stays a float, integral or not")
		_, err = c.Call(ctx, "area", nil, client.WithKwargs(map[string]any{"w": -1}))
		requireCode(t, err, schema.CodeInvalidArgument)
	})
	t.Run("typed func of a scalar", func(t *testing.T) {
		n, err := client.CallAs[int](ctx, c, "double", []any{21})
		require.NoError(t, err)
		require.Equal(t, 42, n)
		n, err = client.CallAs[int](ctx, c, "double", []any{4.0})
		require.NoError(t, err, "an integral float fits an int")
		require.Equal(t, 8, n)
	})
	t.Run("slice of floats", func(t *testing.T) {
		v, err := c.Call(ctx, "mean", []any{[]any{1, 2.0, int64(3)}})
		require.NoError(t, err)
		require.Equal(t, 2.0, v)
	})
	t.Run("named parameters take kwargs", func(t *testing.T) {
		v, err := c.Call(ctx, "add", nil, client.WithKwargs(map[string]any{"b": 1, "a": 2}))
		require.NoError(t, err)
		require.Equal(t, int64(3), v)
	})
}

// TestInt64AndBytesBothCodecs sends 2^62+1 and binary through both codecs
// from the caller to a node and, over an exec hop, to another node.
func TestInt64AndBytesBothCodecs(t *testing.T) {
	const big = int64(1)<<62 + 1
	srv := testcluster.Server(t)
	url := srv.ClientURL()
	n1 := testcluster.Node(t, url, testcluster.NodeConfig(t, "n1"), nil)
	testcluster.Node(t, url, testcluster.NodeConfig(t, "n2"), func(n *node.Node) {
		require.NoError(t, n.Register("inc", func(x int64) int64 { return x + 1 }, node.WithLocs("far")))
		require.NoError(t, n.Register("reverse", func(b []byte) []byte {
			out := make([]byte, len(b))
			for i := range b {
				out[len(b)-1-i] = b[i]
			}
			return out
		}, node.WithLocs("far")))
	})
	testcluster.WaitForRoute(t, n1.Table(), "inc", []string{"far"}, "n2")
	nc := testcluster.Conn(t, url)

	t.Run("json", func(t *testing.T) {
		// JSON carries binary as base64: AAEC/w== is 00 01 02 ff.
		resp := rpcJSON(t, nc, `{"cmds": [
			{"name": "e", "fun": "echo", "args": [4611686018427387905]},
			{"name": "i", "fun": "inc", "args": ["e"], "locs": ["far"]},
			{"name": "r", "fun": "reverse", "args": ["AAEC/w=="], "locs": ["far"]}],
			"results": "all"}`)
		require.Nil(t, resp["error"])
		require.Equal(t, map[string]any{"e": big, "i": big + 1, "r": "/wIBAA=="}, resp["results"])
	})
	t.Run("msgpack", func(t *testing.T) {
		body, err := msgpack.Marshal(map[string]any{"cmds": []any{
			map[string]any{"name": "e", "fun": "echo", "args": []any{big}},
			map[string]any{"name": "i", "fun": "inc", "args": []any{"e"}, "locs": []any{"far"}},
			map[string]any{"name": "r", "fun": "reverse", "args": []any{[]byte{0, 1, 2, 255}}, "locs": []any{"far"}},
		}, "results": "all"})
		require.NoError(t, err)
		m := request(t, nc, rpcSubject, body, map[string][]string{"Content-Type": {codec.MsgPackType}})
		resp := decodeAs(t, m, codec.MsgPackType)
		require.Nil(t, resp["error"])
		require.Equal(t, map[string]any{"e": big, "i": big + 1, "r": []byte{255, 2, 1, 0}}, resp["results"])
	})
	t.Run("client", func(t *testing.T) {
		for _, cd := range []codec.Codec{codec.JSON, codec.MsgPack} {
			c := testcluster.Client(t, url, client.Config{Codec: cd, NoFollow: true})
			v, err := client.CallAs[int64](testwait.Ctx(t), c, "inc", []any{big}, client.WithLocs("far"))
			require.NoError(t, err, cd.ContentType())
			require.Equal(t, big+1, v, cd.ContentType())
			b, err := client.CallAs[[]byte](testwait.Ctx(t), c, "reverse", []any{[]byte{9, 8, 7}}, client.WithLocs("far"))
			require.NoError(t, err, cd.ContentType())
			require.Equal(t, []byte{7, 8, 9}, b, cd.ContentType())
		}
	})
}

func TestFunctionErrorAndPanic(t *testing.T) {
	srv := testcluster.Server(t)
	n := testcluster.Node(t, srv.ClientURL(), testcluster.NodeConfig(t, "n1"), registerStd)
	c := testcluster.Client(t, srv.ClientURL(), client.Config{})
	testcluster.WaitForRoute(t, c.Table(), "boom", nil, "n1")
	ctx := testwait.Ctx(t)

	resp, err := c.Run(ctx, &schema.Request{Cmds: []schema.Command{{Name: "f", Fun: "fail", Args: []any{"disk full on /var"}}}})
	e := requireCode(t, err, schema.CodeFunctionError)
	require.Equal(t, "disk full on /var", e.Message, "the message is the function's error text")
	require.Equal(t, "f", e.Step)
	require.Equal(t, "n1", e.Node)
	require.Empty(t, resp.Results)

	for i := range 3 {
		_, err = c.Run(ctx, &schema.Request{Cmds: []schema.Command{{Name: "p", Fun: "boom"}}})
		e = requireCode(t, err, schema.CodeFunctionPanic)
		require.Contains(t, e.Message, "kaboom")
		require.NotContains(t, e.Message, "goroutine", "no stack trace on the wire")
		require.Equal(t, "p", e.Step)

		_, err = c.Call(ctx, "boom", nil)
		requireCode(t, err, schema.CodeFunctionPanic)

		v, err := c.Call(ctx, "echo", []any{i})
		require.NoError(t, err, "the node keeps serving after a panic")
		require.Equal(t, int64(i), v)
	}
	require.GreaterOrEqual(t, n.Stats().StepErrors, int64(7))
}

// TestStepDeadlineCancelsHandler: when the request's budget runs out the
// handler's context is cancelled and the reply is TIMEOUT, with the results
// that had finished.
func TestStepDeadlineCancelsHandler(t *testing.T) {
	srv := testcluster.Server(t)
	b := newBlocker()
	testcluster.Node(t, srv.ClientURL(), testcluster.NodeConfig(t, "n1"), func(n *node.Node) {
		require.NoError(t, n.Register("block", b.Fn))
	})
	nc := testcluster.Conn(t, srv.ClientURL())
	defer b.Release()

	start := time.Now()
	resp := rpcJSON(t, nc, `{"cmds": [
		{"name": "first", "fun": "echo", "args": ["done"]},
		{"name": "slow", "fun": "block", "args": ["first"]}],
		"timeout_ms": 200}`)
	elapsed := time.Since(start)
	e := wireError(t, resp)
	require.Equal(t, "TIMEOUT", e["code"])
	require.Equal(t, "slow", e["step"])
	require.Equal(t, map[string]any{"first": "done"}, resp["results"], "partial results")
	require.Less(t, elapsed, 3*time.Second, "TIMEOUT comes at the budget, not later")
	require.GreaterOrEqual(t, elapsed, 150*time.Millisecond)
	require.Equal(t, "done", testwait.Recv(t, b.started, "the handler to start"))
	require.ErrorIs(t, testwait.Recv(t, b.cancelled, "the handler's context to end"), context.DeadlineExceeded)
}

// TestSiblingFailureCancelsSlowStep: the first failure cancels the steps in
// flight (CANCELLED propagation, §5).
func TestSiblingFailureCancelsSlowStep(t *testing.T) {
	srv := testcluster.Server(t)
	b := newBlocker()
	defer b.Release()
	testcluster.Node(t, srv.ClientURL(), testcluster.NodeConfig(t, "n1"), func(n *node.Node) {
		require.NoError(t, n.Register("block", b.Fn))
		// failLater fails once the slow sibling is running.
		require.NoError(t, n.Register("failLater", func(ctx context.Context) error {
			select {
			case tag := <-b.started:
				b.started <- tag
			case <-ctx.Done():
				return ctx.Err()
			}
			return schema.Errorf(schema.CodeFunctionError, "sibling gave up")
		}))
	})
	nc := testcluster.Conn(t, srv.ClientURL())

	start := time.Now()
	resp := rpcJSON(t, nc, `{"cmds": [
		{"name": "slow", "fun": "block", "args": ["s"]},
		{"name": "bad", "fun": "failLater"},
		{"name": "after", "fun": "echo", "args": ["slow"]}],
		"timeout_ms": 8000}`)
	e := wireError(t, resp)
	require.Equal(t, "FUNCTION_ERROR", e["code"])
	require.Equal(t, "bad", e["step"])
	require.Equal(t, "sibling gave up", e["message"])
	require.Empty(t, resp["results"])
	require.Less(t, time.Since(start), 4*time.Second, "the request does not wait for the slow step")
	require.ErrorIs(t, testwait.Recv(t, b.cancelled, "the slow step's context to be cancelled"), context.Canceled)
}

// TestPartialResults: a step that fails after others finished returns, with
// the error, the finished results the planner still held: the failed
// step's inputs (b), but not a, which b consumed and no step reads again
// (the planner lets such results go as soon as their readers succeed).
func TestPartialResults(t *testing.T) {
	p := newPair(t)
	resp, err := p.run(t, &schema.Request{Cmds: []schema.Command{
		{Name: "a", Fun: "echo", Args: []any{"kept"}},
		{Name: "b", Fun: "echos", Args: []any{"a", int64(2)}, Locs: []string{"dataset-a"}},
		{Name: "c", Fun: "fail", Args: []any{map[string]any{"$ref": "b", "path": "/0"}}},
		{Name: "d", Fun: "echo", Args: []any{"c"}},
	}})
	e := requireCode(t, err, schema.CodeFunctionError)
	require.Equal(t, "c", e.Step)
	require.Equal(t, "kept", e.Message)
	require.Equal(t, map[string]any{"b": []any{"kept", int64(2)}}, resp.Results, "held results, never d")
}

// TestTimeoutDefaultAndCap: a request without timeout_ms gets the node's
// default budget, and timeout_ms is capped by the node's maximum.
func TestTimeoutDefaultAndCap(t *testing.T) {
	srv := testcluster.Server(t)
	b := newBlocker()
	defer b.Release()
	cfg := testcluster.NodeConfig(t, "n1")
	cfg.Limits.DefaultTimeout, cfg.Limits.MaxTimeout = 200*time.Millisecond, 300*time.Millisecond
	testcluster.Node(t, srv.ClientURL(), cfg, func(n *node.Node) {
		require.NoError(t, n.Register("block", b.Fn))
	})
	nc := testcluster.Conn(t, srv.ClientURL())
	for _, body := range []string{
		`{"cmds": [{"name": "s", "fun": "block", "args": ["default"]}]}`,
		`{"cmds": [{"name": "s", "fun": "block", "args": ["capped"]}], "timeout_ms": 600000}`,
	} {
		start := time.Now()
		resp := rpcJSON(t, nc, body)
		require.Equal(t, "TIMEOUT", wireError(t, resp)["code"], body)
		require.Less(t, time.Since(start), 3*time.Second, body)
		testwait.Recv(t, b.started, "the step to start")
		require.ErrorIs(t, testwait.Recv(t, b.cancelled, "the step to be cancelled"), context.DeadlineExceeded)
	}
	resp := rpcJSON(t, nc, `{"cmds": [{"name": "s", "fun": "echo", "args": [1]}], "timeout_ms": -5}`)
	require.Equal(t, "timeout_ms", details(t, wireError(t, resp))["key"])
}

// TestNamesValidated: ids, function names and locs follow docs/PROTOCOL.md §1.
func TestNamesValidated(t *testing.T) {
	srv := testcluster.Server(t)
	nc := testcluster.Conn(t, srv.ClientURL())
	for _, cfg := range []node.Config{
		{NodeID: "has space"}, {NodeID: "a.b"}, {NodeID: strings.Repeat("n", 65)},
		{NodeID: "ok", Cluster: "bad*cluster"}, {NodeID: "ok", Locs: []string{"two words"}},
	} {
		_, err := node.New(nc, cfg)
		require.ErrorIs(t, err, node.ErrInvalidConfig, "%+v", cfg)
	}
	n, err := node.New(nc, node.Config{NodeID: "ok"})
	require.NoError(t, err)
	defer n.Close()
	for _, name := range []string{"", "a.b", "a*", "a>", "has space", strings.Repeat("f", 129)} {
		require.ErrorIs(t, n.Register(name, func() {}), node.ErrInvalidConfig, "%q", name)
	}
	require.ErrorIs(t, n.Register("f", func() {}, node.WithLocs("two words")), node.ErrInvalidConfig)
	require.ErrorIs(t, n.Register("f", 42), node.ErrInvalidConfig, "not a function")
	require.ErrorIs(t, n.Register("f", func() (int, int) { return 0, 0 }), node.ErrInvalidConfig, "second result must be error")
	require.ErrorIs(t, n.Register("f", func(_, _ int) {}, node.WithParams("a")), node.ErrInvalidConfig, "one name per parameter")
	require.NoError(t, n.Register("ünïcode-ok", func() {}))

	testcluster.Node(t, srv.ClientURL(), testcluster.NodeConfig(t, "n1"), nil)
	resp := rpcJSON(t, nc, `{"cmds": [{"name": "a", "fun": "a.b"}]}`)
	require.Equal(t, "cmds[0].fun", details(t, wireError(t, resp))["key"])
}

// TestInterceptor: the interceptor wraps every call of a registered
// function, over exec from a caller and as the planner's own local step,
// and can refuse one with its own code.
func TestInterceptor(t *testing.T) {
	srv := testcluster.Server(t)
	var mu sync.Mutex
	var seen []node.Invocation
	cfg := testcluster.NodeConfig(t, "n1")
	cfg.Hooks.Interceptor = func(ctx context.Context, inv node.Invocation, args []any, kwargs map[string]any, next node.RawFunc) (any, error) {
		mu.Lock()
		seen = append(seen, inv)
		mu.Unlock()
		if inv.Fun == "inc" {
			return nil, schema.Errorf(schema.CodePermissionDenied, "inc is not for you")
		}
		return next(ctx, args, kwargs)
	}
	testcluster.Node(t, srv.ClientURL(), cfg, registerStd)
	direct := testcluster.Client(t, srv.ClientURL(), client.Config{})
	viaRPC := testcluster.Client(t, srv.ClientURL(), client.Config{NoFollow: true})
	testcluster.WaitForRoute(t, direct.Table(), "add", nil, "n1")
	ctx := testwait.Ctx(t)

	for _, c := range []*client.Client{direct, viaRPC} {
		v, err := c.Call(ctx, "add", []any{1, 2})
		require.NoError(t, err)
		require.Equal(t, int64(3), v)
		_, err = c.Call(ctx, "inc", []any{1})
		e := requireCode(t, err, schema.CodePermissionDenied)
		require.Equal(t, "n1", e.Node)
	}
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, seen, 4)
	for i, fun := range []string{"add", "inc", "add", "inc"} {
		require.Equal(t, fun, seen[i].Fun)
		require.NotEmpty(t, seen[i].ID)
	}
}

// TestRequiredParams: a parameter of type any left out arrives as nil,
// unless Required names it: the call is then INVALID_ARGUMENT "missing
// argument", while an explicit null still passes.
func TestRequiredParams(t *testing.T) {
	srv := testcluster.Server(t)
	pair := func(a, b any) []any { return []any{a, b} }
	testcluster.Node(t, srv.ClientURL(), testcluster.NodeConfig(t, "n1"), func(n *node.Node) {
		require.NoError(t, n.Register("pair", pair, node.WithParams("a", "b"), node.Required("a", "b")))
		require.NoError(t, n.Register("loose", pair, node.WithParams("a", "b")))
		require.ErrorIs(t, n.Register("bad", pair, node.WithParams("a", "b"), node.Required("c")), node.ErrInvalidConfig)
		require.ErrorIs(t, n.Register("bad", pair, node.Required("a")), node.ErrInvalidConfig, "no WithParams")
		raw := node.RawFunc(func(context.Context, []any, map[string]any) (any, error) { return nil, nil })
		require.ErrorIs(t, n.Register("bad", raw, node.Required("a")), node.ErrInvalidConfig)
	})
	c := testcluster.Client(t, srv.ClientURL(), client.Config{})
	testcluster.WaitForRoute(t, c.Table(), "pair", nil, "n1")
	ctx := testwait.Ctx(t)

	_, err := c.Call(ctx, "pair", []any{1})
	e := requireCode(t, err, schema.CodeInvalidArgument)
	require.Equal(t, "pair: missing argument b", e.Message)
	require.Equal(t, "b", detail(t, e, "param"))
	_, err = c.Call(ctx, "pair", nil, client.WithKwargs(map[string]any{"b": 2}))
	e = requireCode(t, err, schema.CodeInvalidArgument)
	require.Equal(t, "pair: missing argument a", e.Message)

	v, err := c.Call(ctx, "pair", []any{1, nil})
	require.NoError(t, err)
	require.Equal(t, []any{int64(1), nil}, v)
	v, err = c.Call(ctx, "pair", []any{1}, client.WithKwargs(map[string]any{"b": "x"}))
	require.NoError(t, err)
	require.Equal(t, []any{int64(1), "x"}, v)
	v, err = c.Call(ctx, "loose", []any{1})
	require.NoError(t, err)
	require.Equal(t, []any{int64(1), nil}, v)
}
