// Package js_test runs the JavaScript examples (plain nats.js, no MPREG
// code) against real Go nodes: a program in another language that follows
// docs/PROTOCOL.md alone can call the cluster and serve functions in it.
package js_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/mpreg/mpreg/client"
	"github.com/mpreg/mpreg/internal/testcluster"
	"github.com/mpreg/mpreg/internal/testwait"
	"github.com/mpreg/mpreg/schema"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func requireNode(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node (Node.js) is not installed: the JavaScript examples cannot run here")
	}
	if _, err := os.Stat("node_modules/nats"); err != nil {
		// make test installs nats.js whenever npm is there and sets
		// MPREG_REQUIRE_JS, so that CI cannot skip this test by accident.
		if os.Getenv("MPREG_REQUIRE_JS") != "" {
			t.Fatalf("nats.js is not installed (%v): run `make js-deps` (npm ci in examples/js)", err)
		}
		t.Skip("nats.js is not installed: run `make js-deps` (npm ci in examples/js) to run the JavaScript examples")
	}
	return bin
}

func TestJavaScriptCallerAndNode(t *testing.T) {
	nodeBin := requireNode(t)
	s := testcluster.Server(t)
	testcluster.Node(t, s.ClientURL(), testcluster.NodeConfig(t, "go-1"), nil)
	env := append(os.Environ(), "MPREG_SERVERS="+s.ClientURL(), "MPREG_NODE_ID=js-1")

	// A JavaScript node joins and serves shout(s) with loc "js".
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	jsNode := exec.CommandContext(ctx, nodeBin, "node.mjs")
	jsNode.Env = env
	var nodeOut testwait.Buffer
	jsNode.Stdout, jsNode.Stderr = &nodeOut, &nodeOut
	require.NoError(t, jsNode.Start())
	exited := make(chan error, 1)
	go func() { exited <- jsNode.Wait() }()
	defer func() {
		_ = jsNode.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			t.Logf("node.mjs exited: %v", err)
		case <-time.After(10 * time.Second):
			_ = jsNode.Process.Kill()
			t.Logf("node.mjs killed: %v", <-exited)
		}
	}()

	c := testcluster.Client(t, s.ClientURL(), client.Config{})
	testcluster.WaitForRoute(t, c.Table(), "shout", []string{"js"}, "js-1")
	p, _ := c.Table().Get("js-1")
	require.Equal(t, []string{"application/json"}, p.Hello.Codecs)

	// A DAG across both languages: a Go step consumes the JavaScript one.
	tctx, tcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer tcancel()
	resp, err := c.Run(tctx, &schema.Request{Cmds: []schema.Command{
		{Name: "|js", Fun: "shout", Args: []any{"from javascript"}, Locs: []string{"js"}},
		{Name: "|go", Fun: "echos", Args: []any{"|js", "and go"}},
	}})
	require.NoError(t, err, nodeOut.String())
	require.Equal(t, map[string]any{"|go": []any{"FROM JAVASCRIPT!", "and go"}}, resp.Results)

	// Its errors come back typed.
	_, err = c.Call(tctx, "shout", []any{int64(5)}, client.WithLocs("js"))
	require.ErrorIs(t, err, schema.ErrInvalidArgument)

	// A JavaScript caller runs a DAG on the Go node.
	caller := exec.CommandContext(ctx, nodeBin, "caller.mjs")
	caller.Env = env
	out, err := caller.CombinedOutput()
	require.NoError(t, err, string(out))
	var got schema.Response
	require.NoError(t, json.Unmarshal(out, &got), string(out))
	require.True(t, strings.HasPrefix(got.ID, "js-caller-"), "the caller's own id: %q", got.ID)
	require.Equal(t, map[string]any{"|second": "hi there!", "|pick": "AND ME TOO"}, got.Results)

	// The JavaScript node says goodbye on SIGTERM: routing stops at once.
	require.NoError(t, jsNode.Process.Signal(syscall.SIGTERM))
	require.NoError(t, <-exited, nodeOut.String())
	exited <- nil // for the deferred cleanup
	testcluster.WaitForNoRoute(t, c.Table(), "shout", []string{"js"})
}
