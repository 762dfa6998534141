package client_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/mpreg/mpreg/bus"
	"github.com/mpreg/mpreg/client"
	"github.com/mpreg/mpreg/codec"
	"github.com/mpreg/mpreg/internal/testcluster"
	"github.com/mpreg/mpreg/internal/testwait"
	"github.com/mpreg/mpreg/node"
	"github.com/mpreg/mpreg/schema"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type point struct {
	X int64  `json:"x"`
	Y int64  `json:"y"`
	L string `json:"label"`
}

// cluster is two nodes on one server: n1 plain, n2 with loc "gpu".
type cluster struct {
	srv    *bus.Server
	n1, n2 *node.Node
}

func register(n *node.Node) {
	must := func(err error) {
		if err != nil {
			panic(err)
		}
	}
	id := n.ID()
	must(n.Register("whoami", func() string { return id }))
	must(n.Register("add", func(a, b int64) int64 { return a + b }, node.WithParams("a", "b")))
	must(n.Register("point", func(x, y int64) point { return point{X: x, Y: y, L: "p"} }))
	must(n.Register("fail", func(msg string) error { return errors.New(msg) }))
	must(n.Register("wait", func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }))
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	c := &cluster{srv: testcluster.Server(t)}
	c.n1 = testcluster.Node(t, c.srv.ClientURL(), testcluster.NodeConfig(t, "n1"), register)
	c.n2 = testcluster.Node(t, c.srv.ClientURL(), testcluster.NodeConfig(t, "n2", "gpu"), register)
	testcluster.WaitForRoute(t, c.n1.Table(), "whoami", nil, "n1", "n2")
	testcluster.WaitForRoute(t, c.n2.Table(), "whoami", nil, "n1", "n2")
	return c
}

func (c *cluster) client(t *testing.T, cfg client.Config) *client.Client {
	t.Helper()
	cl := testcluster.Client(t, c.srv.ClientURL(), cfg)
	if !cfg.NoFollow {
		testcluster.WaitForRoute(t, cl.Table(), "whoami", nil, "n1", "n2")
	}
	return cl
}

func (c *cluster) stats() (requests, steps int64) {
	for _, n := range []*node.Node{c.n1, c.n2} {
		s := n.Stats()
		requests += s.Requests
		steps += s.Steps
	}
	return
}

func TestCallDirect(t *testing.T) {
	c := newCluster(t)
	cl := c.client(t, client.Config{})
	ctx := testwait.Ctx(t)

	r0, s0 := c.stats()
	for i := range 10 {
		v, err := cl.Call(ctx, "add", []any{i, 1})
		require.NoError(t, err)
		require.Equal(t, int64(i+1), v)
	}
	r1, s1 := c.stats()
	require.Equal(t, r0, r1, "a following client sends single calls straight to exec, not rpc")
	require.Equal(t, s0+10, s1)
}

func TestCallNoFollowGoesThroughRPC(t *testing.T) {
	c := newCluster(t)
	cl := c.client(t, client.Config{NoFollow: true})
	require.Empty(t, cl.Table().Peers(), "no membership view")

	r0, _ := c.stats()
	v, err := cl.Call(testwait.Ctx(t), "add", []any{2, 3})
	require.NoError(t, err)
	require.Equal(t, int64(5), v)
	r1, _ := c.stats()
	require.Equal(t, r0+1, r1, "one rpc request")
}

func TestCallAs(t *testing.T) {
	c := newCluster(t)
	cl := c.client(t, client.Config{})
	ctx := testwait.Ctx(t)

	n, err := client.CallAs[int64](ctx, cl, "add", []any{40, 2})
	require.NoError(t, err)
	require.Equal(t, int64(42), n)

	p, err := client.CallAs[point](ctx, cl, "point", []any{3, 4})
	require.NoError(t, err)
	require.Equal(t, point{X: 3, Y: 4, L: "p"}, p)

	m, err := client.CallAs[map[string]int](ctx, cl, "point", []any{5, 6})
	require.Error(t, err, "label is not an int")
	require.Nil(t, m)

	s, err := client.CallAs[[]string](ctx, cl, "echos", []any{"a", "b"})
	require.NoError(t, err)
	require.Equal(t, []string{"a", "b"}, s)

	_, err = client.CallAs[string](ctx, cl, "add", []any{1, 2})
	require.Error(t, err, "an int64 result does not fit a string")
	var se *schema.Error
	require.False(t, errors.As(err, &se), "a local conversion error is not a wire error: %v", err)
}

func TestCallOptions(t *testing.T) {
	c := newCluster(t)
	for _, cfg := range []client.Config{{}, {NoFollow: true}} {
		cl := c.client(t, cfg)
		ctx := testwait.Ctx(t)
		for range 6 {
			who, err := client.CallAs[string](ctx, cl, "whoami", nil, client.WithLocs("gpu"))
			require.NoError(t, err)
			require.Equal(t, "n2", who, "WithLocs, NoFollow=%v", cfg.NoFollow)
		}
		v, err := cl.Call(ctx, "add", nil, client.WithKwargs(map[string]any{"a": 1, "b": 2}))
		require.NoError(t, err)
		require.Equal(t, int64(3), v)
		v, err = cl.Call(ctx, "add", []any{10}, client.WithKwargs(map[string]any{"b": 5}))
		require.NoError(t, err)
		require.Equal(t, int64(15), v)

		start := time.Now()
		_, err = cl.Call(ctx, "wait", nil, client.WithTimeout(200*time.Millisecond))
		require.ErrorIs(t, err, schema.ErrTimeout, "NoFollow=%v", cfg.NoFollow)
		require.Less(t, time.Since(start), 3*time.Second)

		// A deadline on ctx bounds the call too.
		short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		_, err = cl.Call(short, "wait", nil)
		cancel()
		require.ErrorIs(t, err, schema.ErrTimeout, "NoFollow=%v", cfg.NoFollow)

		_, err = cl.Call(ctx, "whoami", nil, client.WithLocs("tpu"))
		require.ErrorIs(t, err, schema.ErrNoRoute)
		var se *schema.Error
		require.True(t, errors.As(err, &se))
		require.Equal(t, "whoami", se.Details.(map[string]any)["fun"])

		_, err = cl.Call(ctx, "fail", []any{"broken"})
		require.ErrorIs(t, err, schema.ErrFunctionError)
		require.True(t, errors.As(err, &se))
		require.Equal(t, "broken", se.Message)
	}
}

func TestRunPartialResults(t *testing.T) {
	c := newCluster(t)
	cl := c.client(t, client.Config{})
	resp, err := cl.Run(testwait.Ctx(t), &schema.Request{ID: "partial", Cmds: []schema.Command{
		{Name: "a", Fun: "add", Args: []any{1, 2}},
		{Name: "b", Fun: "fail", Args: []any{"after a"}, Kwargs: nil},
		{Name: "c", Fun: "add", Args: []any{"a", "b"}},
	}})
	require.ErrorIs(t, err, schema.ErrFunctionError)
	require.NotNil(t, resp, "Run returns the response with its error")
	require.Equal(t, "partial", resp.ID)
	require.Equal(t, resp.Error, err)
	require.NotContains(t, resp.Results, "c")

	resp, err = cl.Run(testwait.Ctx(t), &schema.Request{Cmds: []schema.Command{
		{Name: "a", Fun: "add", Args: []any{1, 2}},
		{Name: "b", Fun: "fail", Args: []any{map[string]any{"$ref": "a"}}},
	}})
	var se *schema.Error
	require.True(t, errors.As(err, &se))
	require.Equal(t, "b", se.Step)
	require.Equal(t, map[string]any{"a": int64(3)}, resp.Results, "the finished step's result")
}

func TestErrNoRoute(t *testing.T) {
	c := newCluster(t)
	cl := c.client(t, client.Config{})
	_, err := cl.Call(testwait.Ctx(t), "nosuch", []any{1})
	require.ErrorIs(t, err, schema.ErrNoRoute)
	require.False(t, errors.Is(err, schema.ErrTimeout))

	// No node at all serves the cluster.
	empty := testcluster.Server(t)
	lonely := testcluster.Client(t, empty.ClientURL(), client.Config{NoFollow: true})
	start := time.Now()
	_, err = lonely.Call(testwait.Ctx(t), "echo", []any{1})
	require.ErrorIs(t, err, schema.ErrNoRoute)
	var e *schema.Error
	require.ErrorAs(t, err, &e, "the caller gets the schema error itself")
	require.Contains(t, e.Message, "no node serves cluster default")
	require.Less(t, time.Since(start), 2*time.Second, "no responders is quick: a few looks over 150 ms")
}

func TestPeers(t *testing.T) {
	c := newCluster(t)
	for _, cfg := range []client.Config{{}, {NoFollow: true}} {
		cl := c.client(t, cfg)
		peers, err := cl.Peers(testwait.Ctx(t))
		require.NoError(t, err)
		require.Len(t, peers, 2, "NoFollow=%v", cfg.NoFollow)
		require.Equal(t, "n1", peers[0].Hello.Node)
		require.Equal(t, "n2", peers[1].Hello.Node)
		require.Equal(t, []string{"gpu"}, peers[1].Hello.Funs["whoami"])
		require.True(t, peers[0].Alive)
	}
	nf := c.client(t, client.Config{NoFollow: true})
	_, err := nf.Peers(testwait.Ctx(t))
	require.NoError(t, err)
	require.Empty(t, nf.Table().Peers(), "Peers on a NoFollow client does not start following")
}

// TestLiteralArgEqualsFunName: a string argument equal to the function's
// name stays a literal when the call goes through rpc.
func TestLiteralArgEqualsFunName(t *testing.T) {
	c := newCluster(t)
	for _, cfg := range []client.Config{{NoFollow: true}, {}} {
		cl := c.client(t, cfg)
		v, err := cl.Call(testwait.Ctx(t), "echo", []any{"echo"})
		require.NoError(t, err)
		require.Equal(t, "echo", v)
		v, err = cl.Call(testwait.Ctx(t), "echos", []any{"echos", "echos#1", "echos#2"})
		require.NoError(t, err)
		require.Equal(t, []any{"echos", "echos#1", "echos#2"}, v)
	}
}

func TestClose(t *testing.T) {
	c := newCluster(t)
	cl, err := client.Connect(testwait.Ctx(t), client.Config{Dial: bus.ConnConfig{Servers: []string{c.srv.ClientURL()}}, SyncQuiet: 50 * time.Millisecond})
	require.NoError(t, err)
	_, err = cl.Call(testwait.Ctx(t), "echo", []any{1})
	require.NoError(t, err)
	cl.Close()
	cl.Close()
	require.True(t, cl.Conn().IsClosed(), "a client closes the connection it dialed")
	_, err = cl.Call(testwait.Ctx(t), "echo", []any{1})
	require.ErrorIs(t, err, client.ErrClosed)
	_, err = client.CallAs[int](testwait.Ctx(t), cl, "echo", []any{1})
	require.ErrorIs(t, err, client.ErrClosed)
	_, err = cl.Run(testwait.Ctx(t), &schema.Request{Cmds: []schema.Command{{Name: "a", Fun: "echo"}}})
	require.ErrorIs(t, err, client.ErrClosed)
	_, err = cl.Peers(testwait.Ctx(t))
	require.ErrorIs(t, err, client.ErrClosed)
	var nilClient *client.Client
	nilClient.Close()

	// A client on a connection it was given leaves it open.
	nc := testcluster.Conn(t, c.srv.ClientURL())
	shared, err := client.Connect(testwait.Ctx(t), client.Config{Conn: nc, SyncQuiet: 50 * time.Millisecond})
	require.NoError(t, err)
	shared.Close()
	require.False(t, nc.IsClosed())
	_, err = shared.Call(testwait.Ctx(t), "echo", []any{1})
	require.ErrorIs(t, err, client.ErrClosed)
}

func TestConnectRejectsBadConfig(t *testing.T) {
	_, err := client.Connect(testwait.Ctx(t), client.Config{Cluster: "bad cluster"})
	require.Error(t, err)
	_, err = client.Connect(testwait.Ctx(t), client.Config{Prefix: "a..b"})
	require.Error(t, err)
}

// Run sends its budget both as timeout_ms and as an absolute deadline_ms,
// so that a planner that reads the request late runs nothing of it.
func TestRunSendsDeadline(t *testing.T) {
	c := newCluster(t)
	spy := testcluster.Conn(t, c.srv.ClientURL())
	sent := make(chan *nats.Msg, 1)
	sub, err := spy.ChanSubscribe("mpreg.default.rpc", sent)
	require.NoError(t, err)
	defer func() { _ = sub.Unsubscribe() }()
	require.NoError(t, spy.Flush())

	cl := testcluster.Client(t, c.srv.ClientURL(), client.Config{NoFollow: true})
	before := time.Now()
	_, err = cl.Run(testwait.Ctx(t), &schema.Request{Cmds: []schema.Command{{Name: "a", Fun: "whoami"}}, TimeoutMS: 4000})
	require.NoError(t, err)
	m := <-sent
	tree, err := codec.MsgPack.Decode(m.Data)
	require.NoError(t, err)
	req, err := schema.ParseRequest(tree)
	require.NoError(t, err)
	require.Equal(t, int64(4000), req.TimeoutMS)
	dl := time.UnixMilli(req.DeadlineMS)
	require.WithinRange(t, dl, before.Add(4*time.Second-time.Millisecond), time.Now().Add(4*time.Second))
}

// Many concurrent calls with large results all get their results: the
// client's replies once went through nats.go's shared reply subscription,
// which dropped replies past 64 MB buffered (one of 120 concurrent 900 KB
// calls was lost now and then).
func TestLoadManyLargeResults(t *testing.T) {
	if raceEnabled {
		t.Skip("a load test: make test runs it without -race (make load)")
	}
	srv := testcluster.Server(t)
	testcluster.Node(t, srv.ClientURL(), testcluster.NodeConfig(t, "n1"), func(n *node.Node) {
		require.NoError(t, n.Register("blob", func(k int64) string { return strings.Repeat("b", int(k)) }))
	})
	for _, follow := range []bool{true, false} {
		// Production liveness timing: 100 MB of replies take a while under
		// the race detector.
		c := testcluster.Client(t, srv.ClientURL(), client.Config{NoFollow: !follow, DeadAfter: 3 * time.Second})
		if follow {
			testcluster.WaitForRoute(t, c.Table(), "blob", nil, "n1")
		}
		errs := make(chan error, 120)
		for range 120 {
			go func() {
				v, err := c.Call(testwait.Ctx(t), "blob", []any{900_000})
				if err == nil && len(v.(string)) != 900_000 {
					err = fmt.Errorf("got %d bytes", len(v.(string)))
				}
				errs <- err
			}()
		}
		for range 120 {
			require.NoError(t, <-errs, "follow %v", follow)
		}
	}
}

// Connect's configuration errors wrap client.ErrInvalidConfig.
func TestConnectInvalidConfig(t *testing.T) {
	for _, cfg := range []client.Config{{Cluster: "a.b", NoFollow: true}, {Prefix: "a..b", NoFollow: true}} {
		_, err := client.Connect(testwait.Ctx(t), cfg)
		require.ErrorIs(t, err, client.ErrInvalidConfig)
	}
}

// With no NATS server there, Connect says so as NODE_UNAVAILABLE naming the
// servers: at once with FailFast, when ctx ends without it.
func TestConnectNoServer(t *testing.T) {
	url := fmt.Sprintf("nats://127.0.0.1:%d", testcluster.FreePort(t))
	start := time.Now()
	_, err := client.Connect(testwait.Ctx(t), client.Config{Dial: bus.ConnConfig{Servers: []string{url}}, FailFast: true, NoFollow: true})
	require.ErrorIs(t, err, schema.ErrNodeUnavailable)
	require.ErrorIs(t, err, nats.ErrNoServers)
	require.Equal(t, "NODE_UNAVAILABLE: cannot reach NATS at "+url+": nats: no servers available for connection", err.Error())
	require.Less(t, time.Since(start), 2*time.Second)

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err = client.Connect(ctx, client.Config{Dial: bus.ConnConfig{Servers: []string{url}}, NoFollow: true})
	require.ErrorIs(t, err, schema.ErrNodeUnavailable)
	require.ErrorIs(t, err, context.DeadlineExceeded)
}

// A following client's direct call follows the function's retry policy:
// a function that fails twice succeeds on its third attempt, with no
// request through a planner.
func TestCallDirectFollowsRetryPolicy(t *testing.T) {
	srv := testcluster.Server(t)
	var calls atomic.Int64
	testcluster.Node(t, srv.ClientURL(), testcluster.NodeConfig(t, "n1"), func(n *node.Node) {
		require.NoError(t, n.Register("flaky", func() (int64, error) {
			if c := calls.Add(1); c <= 2 {
				return 0, errors.New("not yet")
			}
			return calls.Load(), nil
		}, node.WithRetry(node.RetryPolicy{Attempts: 3, InitialBackoff: 10 * time.Millisecond})))
	})
	cl := testcluster.Client(t, srv.ClientURL(), client.Config{})
	testcluster.WaitForRoute(t, cl.Table(), "flaky", nil, "n1")
	v, err := cl.Call(testwait.Ctx(t), "flaky", nil)
	require.NoError(t, err)
	require.Equal(t, int64(3), v)
}
