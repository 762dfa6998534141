// Package js_test runs the JavaScript examples, written on the mpreg npm
// package (sdk/js), against real Go nodes: a JavaScript program calls the
// cluster and serves functions in it.
package js_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/mpreg/mpreg/client"
	"github.com/mpreg/mpreg/internal/testbytes"
	"github.com/mpreg/mpreg/internal/testcluster"
	"github.com/mpreg/mpreg/internal/testwait"
	"github.com/mpreg/mpreg/node"
	"github.com/mpreg/mpreg/schema"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func requireNode(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node (Node.js) is not installed: the JavaScript examples cannot run here")
	}
	if _, err := os.Stat("node_modules/mpreg/dist/index.js"); err != nil {
		// make test installs and builds the package whenever npm is there
		// and sets MPREG_REQUIRE_JS, so that CI cannot skip this test by
		// accident.
		if os.Getenv("MPREG_REQUIRE_JS") != "" {
			t.Fatalf("the mpreg package is not installed and built (%v): run `make js-deps` (npm ci in examples/js and sdk/js, npm run build in sdk/js)", err)
		}
		t.Skip("the mpreg package is not installed and built: run `make js-deps` (npm ci in examples/js and sdk/js, npm run build in sdk/js) to run the JavaScript examples")
	}
	return bin
}

// jsNode is node.mjs running as a node of a test's cluster.
type jsNode struct {
	cmd    *exec.Cmd
	out    *testwait.Buffer
	exited chan error // its exit, once
}

// startJSNode runs node.mjs as node id against url; at cleanup it is sent
// SIGTERM (and killed if it does not exit).
func startJSNode(t *testing.T, url, id string) *jsNode {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	cmd := exec.CommandContext(ctx, requireNode(t), "node.mjs")
	cmd.Env = append(os.Environ(), "MPREG_SERVERS="+url, "MPREG_NODE_ID="+id)
	n := &jsNode{cmd: cmd, out: &testwait.Buffer{}, exited: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = n.out, n.out
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start node.mjs: %v", err)
	}
	go func() { n.exited <- cmd.Wait() }()
	t.Cleanup(func() {
		defer cancel()
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-n.exited:
			t.Logf("node.mjs exited: %v\n%s", err, n.out)
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			t.Logf("node.mjs killed: %v\n%s", <-n.exited, n.out)
		}
	})
	return n
}

func TestJavaScriptCallerAndNode(t *testing.T) {
	nodeBin := requireNode(t)
	s := testcluster.Server(t)
	// The JavaScript node beats every second: the Go node and client wait
	// three before they take it for dead.
	cfg := testcluster.NodeConfig(t, "go-1")
	cfg.Gossip.DeadAfter = 3 * time.Second
	testcluster.Node(t, s.ClientURL(), cfg, nil)

	// A JavaScript node joins and serves shout(s) with loc "js".
	jsNode := startJSNode(t, s.ClientURL(), "js-1")
	c := testcluster.Client(t, s.ClientURL(), client.Config{DeadAfter: 3 * time.Second})
	testcluster.WaitForRoute(t, c.Table(), "shout", []string{"js"}, "js-1")
	p, _ := c.Table().Get("js-1")
	require.Equal(t, []string{"application/msgpack", "application/json"}, p.Hello.Codecs)
	require.Equal(t, map[string]schema.RetryPolicy{"shout": {Attempts: 3, InitialBackoffMS: 50, MaxBackoffMS: 1000, Multiplier: 2, Jitter: 0.1}},
		p.Hello.Retry, "its retry policy")

	// A DAG across both languages: a Go step consumes the JavaScript one.
	tctx, tcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer tcancel()
	resp, err := c.Run(tctx, &schema.Request{Cmds: []schema.Command{
		{Name: "|js", Fun: "shout", Args: []any{"from javascript"}, Locs: []string{"js"}},
		{Name: "|go", Fun: "echos", Args: []any{"|js", "and go"}},
	}})
	require.NoError(t, err, jsNode.out.String())
	require.Equal(t, map[string]any{"|go": []any{"FROM JAVASCRIPT!", "and go"}}, resp.Results)

	// Its errors come back typed.
	_, err = c.Call(tctx, "shout", []any{int64(5)}, client.WithLocs("js"))
	require.ErrorIs(t, err, schema.ErrInvalidArgument)

	// A JavaScript caller runs a DAG on the Go node.
	caller := exec.CommandContext(tctx, nodeBin, "caller.mjs")
	caller.Env = append(os.Environ(), "MPREG_SERVERS="+s.ClientURL())
	out, err := caller.CombinedOutput()
	require.NoError(t, err, string(out))
	var got schema.Response
	require.NoError(t, json.Unmarshal(out, &got), string(out))
	require.True(t, strings.HasPrefix(got.ID, "js-caller-"), "the caller's own id: %q", got.ID)
	require.Equal(t, map[string]any{"|second": "hi there!", "|pick": "AND ME TOO"}, got.Results)

	// The JavaScript node says goodbye on SIGTERM: routing stops at once.
	require.NoError(t, jsNode.cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, <-jsNode.exited, jsNode.out.String())
	jsNode.exited <- nil // for the cleanup
	testcluster.WaitForNoRoute(t, c.Table(), "shout", []string{"js"})
}

// TestJavaScriptNodeReplyTooLarge: a result over the NATS max payload is
// PAYLOAD_TOO_LARGE, and the node goes on serving.
func TestJavaScriptNodeReplyTooLarge(t *testing.T) {
	s := testcluster.Server(t)
	n := startJSNode(t, s.ClientURL(), "js-1")
	c := testcluster.Client(t, s.ClientURL(), client.Config{DeadAfter: 3 * time.Second}) // the node beats every second
	testcluster.WaitForRoute(t, c.Table(), "shout", []string{"js"}, "js-1")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// "ΐ" (2 bytes) upper-cases to 3 code points of 2 bytes: 400 KB of
	// arguments make a 1.2 MB result, past the 1 MiB max payload.
	big := strings.Repeat("ΐ", 200_000)
	_, err := c.Call(ctx, "shout", []any{big}, client.WithLocs("js"))
	var e *schema.Error
	require.ErrorAs(t, err, &e, n.out.String())
	require.Equal(t, schema.CodePayloadTooLarge, e.Code, e.Error())
	require.Equal(t, "js-1", e.Node)
	require.Equal(t, "max_payload", e.Details.(map[string]any)["limit"])

	v, err := c.Call(ctx, "shout", []any{"still here"}, client.WithLocs("js"))
	require.NoError(t, err, n.out.String())
	require.Equal(t, "STILL HERE!", v)
}

// TestJavaScriptNodeInvalidRequest: an exec body that is not an object
// with cluster gets INVALID_REQUEST, not silence.
func TestJavaScriptNodeInvalidRequest(t *testing.T) {
	s := testcluster.Server(t)
	n := startJSNode(t, s.ClientURL(), "js-1")
	c := testcluster.Client(t, s.ClientURL(), client.Config{DeadAfter: 3 * time.Second})
	testcluster.WaitForRoute(t, c.Table(), "shout", []string{"js"}, "js-1")
	nc := testcluster.Conn(t, s.ClientURL())
	for _, body := range []string{``, `5`, `"shout"`, `null`, `[]`, `{}`, `{"fun": "shout", "args": ["x"]}`, `{"cluster": 7, "fun": "shout"}`, `{not json`} {
		m, err := nc.Request("mpreg.default.node.js-1.exec", []byte(body), 5*time.Second)
		require.NoError(t, err, "body %q: %s", body, n.out.String())
		var reply struct{ Error *schema.Error }
		require.NoError(t, json.Unmarshal(m.Data, &reply), string(m.Data))
		require.NotNil(t, reply.Error, "body %q: %s", body, m.Data)
		require.Equal(t, schema.CodeInvalidRequest, reply.Error.Code, "body %q: %s", body, m.Data)
	}
	v, err := c.Call(context.Background(), "shout", []any{"still here"}, client.WithLocs("js"), client.WithTimeout(10*time.Second))
	require.NoError(t, err, n.out.String())
	require.Equal(t, "STILL HERE!", v)
}

// TestJavaScriptReadsReference: a nats.js caller gets a result too big for
// a message as a reference, and reads it with the object store API:
// the bytes, of the size and SHA-256 the reference names; it deletes the
// object once read.
func TestJavaScriptReadsReference(t *testing.T) {
	nodeBin := requireNode(t)
	s := testcluster.Server(t, testcluster.WithJetStream(t.TempDir()))
	const size = 1 << 20
	data := testbytes.Pattern(size, 0) // what the demo's blob(size) returns
	n := testcluster.Node(t, s.ClientURL(), testcluster.NodeConfig(t, "go-1"), func(n *node.Node) {
		require.NoError(t, n.Register("blob", func(size int) []byte { return data[:size] }))
	})
	testcluster.WaitForRoute(t, n.Table(), "blob", nil, "go-1")

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	caller := exec.CommandContext(ctx, nodeBin, "reference.mjs", "blob", fmt.Sprintf("[%d]", size))
	caller.Env = append(os.Environ(), "MPREG_SERVERS="+s.ClientURL())
	out, err := caller.CombinedOutput()
	require.NoError(t, err, string(out))
	var got struct {
		Name, Encoding, SHA256 string
		Size                   int
	}
	require.NoError(t, json.Unmarshal(out, &got), string(out))
	require.Equal(t, testbytes.SHA256(data), got.SHA256)
	require.Equal(t, size, got.Size)
	require.Equal(t, "bytes", got.Encoding)
	require.True(t, strings.HasPrefix(got.Name, "js-ref-"), "named after the request: %q", got.Name)

	js, err := jetstream.New(testcluster.Conn(t, s.ClientURL()))
	require.NoError(t, err)
	store, err := js.ObjectStore(ctx, "mpreg-default")
	require.NoError(t, err)
	_, err = store.GetInfo(ctx, got.Name)
	require.ErrorIs(t, err, jetstream.ErrObjectNotFound, "the caller deleted the object")
}
