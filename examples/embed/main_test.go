package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/mpreg/mpreg/internal/demo"
	"github.com/mpreg/mpreg/internal/testcluster"
	"github.com/mpreg/mpreg/node"
)

// bin is the example built by TestMain.
var bin string

type buildAndRun struct{ m *testing.M }

func (b buildAndRun) Run() int {
	dir, err := os.MkdirTemp("", "mpreg-embed-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = os.RemoveAll(dir) }()
	bin = filepath.Join(dir, "embed")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		return 1
	}
	return b.m.Run()
}

func TestMain(m *testing.M) { goleak.VerifyTestMain(buildAndRun{m}) }

// runExample runs the example with the environment variable env (KEY=V,
// or "") and args, and returns its output and exit code.
func runExample(t *testing.T, env string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MPREG_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	if env != "" {
		cmd.Env = append(cmd.Env, env)
	}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		require.True(t, errors.As(err, &ee), "%v", err)
		code = ee.ExitCode()
	}
	t.Logf("embed %v (%s) -> exit %d\nstdout: %s\nstderr: %s", args, env, code, out.String(), errOut.String())
	return out.String(), errOut.String(), code
}

// TestNoServerFailsFast: the address comes from MPREG_SERVERS or -servers,
// and with nothing listening there the example fails at once with the
// message mpreg gives.
func TestNoServerFailsFast(t *testing.T) {
	url := fmt.Sprintf("nats://127.0.0.1:%d", testcluster.FreePort(t))
	want := "NODE_UNAVAILABLE: cannot reach NATS at " + url + ": nats: no servers available for connection\n"
	for _, tc := range []struct {
		env  string
		args []string
	}{
		{"MPREG_SERVERS=" + url, nil},
		{"", []string{"-servers", url}},
		{"MPREG_SERVERS=nats://127.0.0.1:1", []string{"-servers", url}}, // the flag wins
	} {
		start := time.Now()
		stdout, stderr, code := runExample(t, tc.env, tc.args...)
		require.Equal(t, 1, code)
		require.Equal(t, want, stderr)
		require.Empty(t, stdout)
		require.Less(t, time.Since(start), 5*time.Second, "it does not wait for its budget")
	}
}

// TestRunsAgainstACluster: the example against a node with the demo
// functions and loc dataset-a prints what the README shows.
func TestRunsAgainstACluster(t *testing.T) {
	s := testcluster.Server(t)
	testcluster.Node(t, s.ClientURL(), testcluster.NodeConfig(t, "n2", "dataset-a"), func(n *node.Node) {
		require.NoError(t, demo.Register(n))
	})
	stdout, stderr, code := runExample(t, "MPREG_SERVERS="+s.ClientURL())
	require.Equal(t, 0, code, stderr)
	require.Equal(t, `mean: 2.5 <nil>
area: 4.5 <nil>
results: map[|report:[5 n2]] <nil>
error: FUNCTION_ERROR: mean of nothing (step mean on node stats-1) | is FUNCTION_ERROR: true
`, stdout)
}
