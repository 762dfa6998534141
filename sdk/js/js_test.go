// Package sdkjs_test runs the tests of the mpreg npm package (sdk/js/test,
// Node's built-in test runner) against a real cluster: an embedded
// nats-server with JetStream and two Go nodes with the demo functions, in
// this process.
package sdkjs_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/mpreg/mpreg/internal/demo"
	"github.com/mpreg/mpreg/internal/testcluster"
	"github.com/mpreg/mpreg/node"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// requireJS returns the path of node, or skips the test with the reason
// when Node.js, the package's dependencies or its build are missing; with
// MPREG_REQUIRE_JS set (make test, when npm is there) it fails instead.
func requireJS(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("node")
	if err != nil {
		if os.Getenv("MPREG_REQUIRE_JS") != "" {
			t.Fatalf("node (Node.js) is not installed, and MPREG_REQUIRE_JS is set")
		}
		t.Skip("node (Node.js) is not installed: the TypeScript package's tests cannot run here")
	}
	for _, p := range []string{"node_modules/@nats-io/transport-node", "dist/index.js"} {
		if _, err := os.Stat(p); err != nil {
			if os.Getenv("MPREG_REQUIRE_JS") != "" {
				t.Fatalf("sdk/js is not installed and built (%v): run `make js-deps`", err)
			}
			t.Skipf("sdk/js is not installed and built (%s missing): run `make js-deps` (npm ci and npm run build in sdk/js)", p)
		}
	}
	return bin
}

// buildMpreg builds cmd/mpreg into a temporary directory, for tests that
// start (and kill) a Go node as a process of its own.
func buildMpreg(t *testing.T) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "mpreg")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "../../cmd/mpreg")
	b, err := cmd.CombinedOutput()
	require.NoError(t, err, "go build ./cmd/mpreg: %s", b)
	return out
}

// testFiles are the package's test files, in name order.
func testFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("test/*.test.mjs")
	require.NoError(t, err)
	require.NotEmpty(t, files, "no test files in sdk/js/test")
	sort.Strings(files)
	return files
}

func TestPackage(t *testing.T) {
	nodeBin := requireJS(t)
	mpregBin := buildMpreg(t)

	s := testcluster.Server(t, testcluster.WithJetStream(t.TempDir()))
	register := func(n *node.Node) { require.NoError(t, demo.Register(n)) }
	var nodes []*node.Node
	for _, id := range []string{"go-1", "go-2"} {
		nodes = append(nodes, testcluster.Node(t, s.ClientURL(), testcluster.NodeConfig(t, id), register))
	}
	for _, n := range nodes {
		testcluster.WaitForRoute(t, n.Table(), "sleep", nil, "go-1", "go-2")
	}

	for _, file := range testFiles(t) {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".test.mjs"), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, nodeBin, "--test", file)
			cmd.Env = append(os.Environ(),
				"MPREG_SERVERS="+s.ClientURL(),
				"MPREG_CLUSTER=default",
				"MPREG_BIN="+mpregBin,
				"MPREG_NODES=go-1,go-2",
			)
			out, err := cmd.CombinedOutput()
			t.Logf("node --test %s:\n%s", file, out)
			require.NoError(t, err, "node --test %s failed", file)
			require.Regexp(t, `(?m)^\S+ pass [1-9]`, string(out), "the runner's summary: tests passed")
			require.Regexp(t, `(?m)^\S+ fail 0$`, string(out), "the runner's summary: none failed")
		})
	}
}
