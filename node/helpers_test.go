package node_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/mpreg/mpreg/codec"
	"github.com/mpreg/mpreg/internal/testcluster"
	"github.com/mpreg/mpreg/membership"
	"github.com/mpreg/mpreg/node"
	"github.com/mpreg/mpreg/schema"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// nats.go v1.55.0's ObjectStore.Put makes a JetStream context per
		// call whose reconnect watcher, when the call ends before that
		// goroutine first runs, is left receiving from a nil channel
		// (cleanupReplySub clears the channel it has not read yet). Seen
		// only on a starved machine; the goroutine holds no resources but
		// its stack.
		goleak.IgnoreTopFunction("github.com/nats-io/nats.go/jetstream.(*jetStream).resetPendingAcksOnReconnect"))
}

// bound is the most any single wait in these tests may take before the test
// fails; every blocking receive sits in a select against it.
const bound = 10 * time.Second

// Subjects of the default cluster under the default prefix, spelled out as a
// program in another language would.
const (
	rpcSubject  = "mpreg.default.rpc"
	syncSubject = "mpreg.default.gossip.sync"
)

func execSubject(node string) string { return "mpreg.default.node." + node + ".exec" }
func infoSubject(node string) string { return "mpreg.default.node." + node + ".info" }

func jsonHeader() nats.Header { return nats.Header{"Content-Type": []string{codec.JSONType}} }

// request sends a raw request and checks that the reply names its codec in
// Content-Type when the request named one (docs/PROTOCOL.md §3: a JSON
// reply to a request that named none has no Content-Type).
func request(t testing.TB, nc *nats.Conn, subject string, data []byte, hdr nats.Header) *nats.Msg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	m, err := nc.RequestMsgWithContext(ctx, &nats.Msg{Subject: subject, Data: data, Header: hdr})
	require.NoError(t, err, "request on %s", subject)
	if hdr.Get(codec.HeaderContentType) == "" && hdr.Get(codec.HeaderAccept) == "" {
		require.Empty(t, m.Header.Get(codec.HeaderContentType), "reply on %s to a request that named no codec", subject)
	} else {
		require.NotEmpty(t, m.Header.Get(codec.HeaderContentType), "reply on %s has no Content-Type", subject)
	}
	return m
}

// decodeAs decodes a reply body with the codec named by want and checks that
// the reply's Content-Type is want (or absent, for JSON).
func decodeAs(t testing.TB, m *nats.Msg, want string) map[string]any {
	t.Helper()
	if got := m.Header.Get(codec.HeaderContentType); got != "" || want != codec.JSONType {
		require.Equal(t, want, got, "reply Content-Type")
	}
	c, ok := codec.ByType(want)
	require.True(t, ok)
	tree, err := c.Decode(m.Data)
	require.NoError(t, err, "reply body %q", m.Data)
	body, ok := tree.(map[string]any)
	require.True(t, ok, "reply is not a map: %#v", tree)
	return body
}

// rpcJSON sends a JSON request body to the rpc subject and decodes the JSON
// reply.
func rpcJSON(t testing.TB, nc *nats.Conn, body string) map[string]any {
	t.Helper()
	return decodeAs(t, request(t, nc, rpcSubject, []byte(body), jsonHeader()), codec.JSONType)
}

// execJSON sends a JSON exec body to node and decodes the JSON reply.
func execJSON(t testing.TB, nc *nats.Conn, node string, body map[string]any) map[string]any {
	t.Helper()
	data, err := codec.JSON.Encode(body)
	require.NoError(t, err)
	return decodeAs(t, request(t, nc, execSubject(node), data, jsonHeader()), codec.JSONType)
}

// execAsync sends a JSON exec body to node without waiting for the reply,
// which arrives on the returned channel (nil if the request failed).
func execAsync(t testing.TB, nc *nats.Conn, node string, body map[string]any) <-chan *nats.Msg {
	t.Helper()
	data, err := codec.JSON.Encode(body)
	require.NoError(t, err)
	ch := make(chan *nats.Msg, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), bound)
		defer cancel()
		r, _ := nc.RequestMsgWithContext(ctx, &nats.Msg{Subject: execSubject(node), Data: data, Header: jsonHeader()})
		ch <- r
	}()
	return ch
}

// waitForInflight waits until node's heartbeats, as table sees them, say
// it runs or queues n steps.
func waitForInflight(t testing.TB, table *membership.Table, node string, n int64) {
	t.Helper()
	testcluster.WaitFor(t, fmt.Sprintf("%s to hold %d steps", node, n), func() error {
		if p, _ := table.Get(node); p.Load.Inflight != n {
			return fmt.Errorf("heartbeat load %+v", p.Load)
		}
		return nil
	})
}

// wireError returns the error object of a decoded response, failing when
// there is none, and checks the §5 shape: a known code and a message.
func wireError(t testing.TB, resp map[string]any) map[string]any {
	t.Helper()
	e, ok := resp["error"].(map[string]any)
	require.True(t, ok, "want an error object, got %#v", resp)
	code, _ := e["code"].(string)
	require.True(t, schema.Code(code).Valid(), "unknown code %q", code)
	_, ok = e["message"].(string)
	require.True(t, ok, "error without a message: %#v", e)
	return e
}

// details returns the details map of a wire error.
func details(t testing.TB, e map[string]any) map[string]any {
	t.Helper()
	d, ok := e["details"].(map[string]any)
	require.True(t, ok, "error without details: %#v", e)
	return d
}

// requireCode checks err is a *schema.Error with code c and returns it.
func requireCode(t testing.TB, err error, c schema.Code) *schema.Error {
	t.Helper()
	require.Error(t, err)
	var e *schema.Error
	require.True(t, errors.As(err, &e), "want *schema.Error, got %T: %v", err, err)
	require.Equal(t, c, e.Code, "error: %v", e)
	return e
}

// detail returns details[key] of a *schema.Error.
func detail(t testing.TB, e *schema.Error, key string) any {
	t.Helper()
	d, ok := e.Details.(map[string]any)
	require.True(t, ok, "error without details: %v", e)
	return d[key]
}

// blocker is a function that blocks until the test releases it or its
// context ends, and reports both events on channels.
type blocker struct {
	started   chan string // the argument of each call, when it starts
	cancelled chan error  // ctx.Err() of each call that saw its context end
	release   chan struct{}
	once      sync.Once
}

func newBlocker() *blocker {
	return &blocker{started: make(chan string, 64), cancelled: make(chan error, 64), release: make(chan struct{})}
}

// Fn is registered with node.Register: block(tag string) string.
func (b *blocker) Fn(ctx context.Context, tag string) (string, error) {
	b.started <- tag
	select {
	case <-ctx.Done():
		b.cancelled <- ctx.Err()
		return "", ctx.Err()
	case <-b.release:
		return tag, nil
	}
}

// Release lets every call, current and future, return.
func (b *blocker) Release() { b.once.Do(func() { close(b.release) }) }

// whoami returns a function that returns the node's id.
func whoami(id string) func() string { return func() string { return id } }

// registerStd registers the typed test functions used across this package.
func registerStd(n *node.Node) {
	must := func(err error) {
		if err != nil {
			panic(err)
		}
	}
	must(n.Register("add", func(a, b int64) int64 { return a + b }, node.WithParams("a", "b")))
	must(n.Register("sum3", func(a, b, c int64) int64 { return a + b + c }))
	must(n.Register("concat4", func(a, b, c, d string) string { return a + b + c + d }))
	must(n.Register("join", func(sep string, parts ...string) string { return strings.Join(parts, sep) }))
	must(n.Register("greet", func(p greeting) string { return strings.Repeat("hello "+p.Name+" ", p.Times) }))
	must(n.Register("fail", func(msg string) error { return errors.New(msg) }))
	must(n.Register("boom", func() string { panic("kaboom") }))
	must(n.Register("reverse", func(b []byte) []byte {
		out := make([]byte, len(b))
		for i := range b {
			out[len(b)-1-i] = b[i]
		}
		return out
	}))
	must(n.Register("inc", func(x int64) int64 { return x + 1 }))
	must(n.Register("area", node.Func(func(_ context.Context, r rect) (float64, error) {
		if r.W < 0 || r.H < 0 {
			return 0, schema.Errorf(schema.CodeInvalidArgument, "negative side")
		}
		return r.W * r.H, nil
	})))
	must(n.Register("double", node.Func(func(_ context.Context, x int) (int, error) { return 2 * x, nil })))
	must(n.Register("mean", func(xs []float64) float64 {
		s := 0.0
		for _, x := range xs {
			s += x
		}
		return s / float64(len(xs))
	}))
	must(n.Register("nothing", func() {}))
	must(n.Register("whoami", whoami(n.ID())))
	must(n.Register("raw", node.RawFunc(func(_ context.Context, args []any, kwargs map[string]any) (any, error) {
		return map[string]any{"args": args, "kwargs": kwargs}, nil
	})))
	must(n.Register("profile", func(user string) map[string]any {
		return map[string]any{
			"user":  user,
			"tags":  []string{"a", "b", "c"},
			"pets":  []map[string]any{{"name": "rex"}, {"name": "tom"}},
			"a/b":   "slash",
			"m~n":   "tilde",
			"count": int64(3),
		}
	}))
}

// rect is the input of area, a node.Func.
type rect struct {
	W float64 `json:"w"`
	H float64 `json:"h"`
}

// greeting is the struct parameter of greet.
type greeting struct {
	Name  string `json:"name"`
	Times int    `json:"times"`
}

// readme is the request of docs/PROTOCOL.md §4.
const readme = `{
  "id": "readme-1",
  "cmds": [
    {"name": "|first",  "fun": "echo",  "args": ["hi there!"]},
    {"name": "|second", "fun": "echo",  "args": ["|first"]},
    {"name": "|third",  "fun": "echos", "args": ["|first", "AND ME TOO"],
     "kwargs": {}, "locs": ["dataset-a"]}
  ],
  "timeout_ms": 5000,
  "results": "sinks"
}`

func sortedKeys(m map[string]any) []string { return slices.Sorted(maps.Keys(m)) }
