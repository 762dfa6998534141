package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/mpreg/mpreg/client"
	"github.com/mpreg/mpreg/internal/demo"
	"github.com/mpreg/mpreg/internal/testcluster"
	"github.com/mpreg/mpreg/internal/testwait"
	"github.com/mpreg/mpreg/node"
	"github.com/mpreg/mpreg/schema"
)

// bin is the mpreg binary built by TestMain.
var bin string

type buildAndRun struct{ m *testing.M }

func (b buildAndRun) Run() int {
	dir, err := os.MkdirTemp("", "mpreg-cli-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = os.RemoveAll(dir) }()
	bin = filepath.Join(dir, "mpreg")
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	if out, err := exec.Command("go", append(args, ".")...).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		return 1
	}
	return b.m.Run()
}

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(buildAndRun{m},
		// nats.go v1.55.0's ObjectStore.Put leaves a reconnect watcher
		// receiving from a nil channel when the call ends before that
		// goroutine first runs (see node/helpers_test.go).
		goleak.IgnoreTopFunction("github.com/nats-io/nats.go/jetstream.(*jetStream).resetPendingAcksOnReconnect"))
}

// result is how one run of the binary ended.
type result struct {
	stdout, stderr string
	code           int
}

type opts struct {
	env   []string
	stdin string
	// wait bounds the run; default 20 s.
	wait time.Duration
}

// cleanEnv is the test's environment without MPREG_ variables.
func cleanEnv(extra ...string) []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MPREG_") {
			out = append(out, kv)
		}
	}
	// The race runtime sleeps 1 s at exit by default, to let late reports
	// in; the tests wait for each exit.
	out = append(out, "GORACE=atexit_sleep_ms=0")
	return append(out, extra...)
}

// mpreg runs the binary to completion.
func mpreg(t *testing.T, o opts, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cmp.Or(o.wait, 20*time.Second))
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = cleanEnv(append([]string{dataHome(t)}, o.env...)...)
	cmd.Stdin = strings.NewReader(o.stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	r := result{}
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("mpreg %v: %v", args, err)
		}
		r.code = ee.ExitCode()
	}
	r.stdout, r.stderr = stdout.String(), stderr.String()
	t.Logf("mpreg %s -> exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	return r
}

// cluster starts a NATS server and node "n1" (loc cpu, demo functions) and
// returns the client URL.
func cluster(t *testing.T) string {
	t.Helper()
	s := testcluster.Server(t)
	testcluster.Node(t, s.ClientURL(), testcluster.NodeConfig(t, "n1", "cpu"), func(n *node.Node) {
		require.NoError(t, demo.Register(n))
	})
	return s.ClientURL()
}

// decode parses JSON output.
func decode(t *testing.T, s string) any {
	t.Helper()
	var v any
	require.NoError(t, json.Unmarshal([]byte(s), &v), "output %q", s)
	return v
}

func TestCall(t *testing.T) {
	t.Parallel()
	url := cluster(t)
	for _, tc := range []struct {
		name string
		args []string
		want string // JSON
	}{
		{"ints stay ints", []string{"add", "2", "3"}, `5`},
		{"floats", []string{"add", "2", "0.5"}, `2.5`},
		{"object argument", []string{"echo", `{"a":1}`}, `{"a":1}`},
		{"plain strings", []string{"echos", "hello", "world", "42", `"42"`}, `["hello","world",42,"42"]`},
		{"no arguments", []string{"whoami"}, `"n1"`},
		{"kwargs", []string{"add", "--kw", "a=1", "--kw", "b=2"}, `3`},
		{"args and kwargs", []string{"add", "40", "--kw", "b=2"}, `42`},
		{"kwarg value as JSON", []string{"sleep", "1", "--kw", `value={"x":[1,"y"]}`}, `{"x":[1,"y"]}`},
		{"kwarg value as string", []string{"upper", "--kw", "s=a=b c"}, `"A=B C"`},
		{"negative numbers after --", []string{"add", "--", "-1", "-2"}, `-3`},
		{"loc", []string{"whoami", "--loc", "cpu"}, `"n1"`},
		{"json codec", []string{"add", "2", "3", "--codec", "json"}, `5`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := mpreg(t, opts{}, append([]string{"call", "--servers", url}, tc.args...)...)
			require.Equal(t, 0, r.code, r.stderr)
			assert.Equal(t, decode(t, tc.want), decode(t, r.stdout))
			assert.True(t, strings.HasSuffix(r.stdout, "\n"))
		})
	}
	t.Run("pretty output", func(t *testing.T) {
		r := mpreg(t, opts{}, "call", "echo", `{"a":1,"b":[2]}`, "--servers", url)
		require.Equal(t, 0, r.code, r.stderr)
		assert.Equal(t, "{\n  \"a\": 1,\n  \"b\": [\n    2\n  ]\n}\n", r.stdout)
	})
}

func TestCallErrors(t *testing.T) {
	t.Parallel()
	url := cluster(t)
	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stderr string // prefix
	}{
		{"no route", []string{"whoami", "--loc", "tpu"}, 1, "NO_ROUTE: no live node offers whoami with locs [tpu] (step whoami)"},
		{"unknown function", []string{"nope"}, 1, "NO_ROUTE: "},
		{"function error", []string{"fail", "boom"}, 1, "FUNCTION_ERROR: boom (step fail on node n1)"},
		{"panic", []string{"panic", "boom"}, 1, "FUNCTION_PANIC: "},
		{"bad arguments", []string{"add", "1", "2", "3"}, 1, "INVALID_ARGUMENT: "},
		{"missing argument", []string{"add", "1"}, 1, "INVALID_ARGUMENT: add: missing argument b (step add on node n1)\n"},
		{"null argument", []string{"add", "1", "null"}, 1, "INVALID_ARGUMENT: add: b: want a number, got null (step add on node n1)\n"},
		{"timeout", []string{"sleep", "5000", "--timeout", "300ms"}, 1, "TIMEOUT: "},
		{"other cluster", []string{"whoami", "--cluster", "elsewhere"}, 1, "NO_ROUTE: "},
		{"bad flag", []string{"add", "--bogus"}, 2, "mpreg: error: unknown flag --bogus"},
		{"bad kw", []string{"add", "--kw", "novalue"}, 2, `mpreg: error: --kw "novalue": want K=V`},
		{"bad duration", []string{"add", "--timeout", "soon"}, 2, "mpreg: error: --timeout"},
		{"bad codec", []string{"add", "--codec", "xml"}, 2, "mpreg: error: --codec"},
		{"bad cluster id", []string{"add", "--cluster", "a b"}, 2, "mpreg: error: "},
		{"missing function", nil, 2, "mpreg: error: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := mpreg(t, opts{}, append(append([]string{"call"}, tc.args...), "--servers", url)...)
			assert.Equal(t, tc.code, r.code)
			assert.True(t, strings.HasPrefix(r.stderr, tc.stderr), "stderr %q, want prefix %q", r.stderr, tc.stderr)
			assert.Empty(t, r.stdout)
		})
	}
	t.Run("no server", func(t *testing.T) {
		r := mpreg(t, opts{}, "call", "whoami", "--servers", "nats://127.0.0.1:"+fmt.Sprint(testcluster.FreePort(t)))
		assert.Equal(t, 1, r.code)
		assert.Regexp(t, `^NODE_UNAVAILABLE: cannot reach NATS at nats://127\.0\.0\.1:\d+: `, r.stderr)
	})
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{},
		{"frobnicate"},
		{"--bogus"},
		{"peers", "extra"},
		{"server", "--log-level", "loud"},
		{"call", "echo", "x", "--config", "/nonexistent/mpreg.json"},
		{"run", "/nonexistent/request.json"},
	} {
		r := mpreg(t, opts{}, args...)
		assert.Equal(t, 2, r.code, "mpreg %v", args)
		assert.Contains(t, r.stderr, "mpreg: error: ", "mpreg %v", args)
	}
}

func TestRun(t *testing.T) {
	t.Parallel()
	url := cluster(t)
	req := `{"id": "r1", "cmds": [
		{"name": "|a", "fun": "add", "args": [1, 2]},
		{"name": "|b", "fun": "echos", "args": ["|a", {"$ref": "|a"}, "x"]}
	]}`
	t.Run("stdin", func(t *testing.T) {
		r := mpreg(t, opts{stdin: req}, "run", "-", "--servers", url)
		require.Equal(t, 0, r.code, r.stderr)
		assert.Equal(t, decode(t, `{"id":"r1","results":{"|b":[3,3,"x"]}}`), decode(t, r.stdout))
	})
	t.Run("file, results all, json codec", func(t *testing.T) {
		f := filepath.Join(t.TempDir(), "req.json")
		require.NoError(t, os.WriteFile(f, []byte(`{"id":"r2","results":"all","cmds":[{"name":"u","fun":"upper","args":["x"]}]}`), 0o600))
		r := mpreg(t, opts{}, "run", f, "--servers", url, "--codec", "json")
		require.Equal(t, 0, r.code, r.stderr)
		assert.Equal(t, decode(t, `{"id":"r2","results":{"u":"X"}}`), decode(t, r.stdout))
	})
	t.Run("error response", func(t *testing.T) {
		r := mpreg(t, opts{stdin: `{"id":"r3","cmds":[
			{"name":"ok","fun":"echo","args":["fine"]},
			{"name":"bad","fun":"fail","args":["ok"]}]}`}, "run", "-", "--servers", url)
		assert.Equal(t, 1, r.code)
		assert.True(t, strings.HasPrefix(r.stderr, "FUNCTION_ERROR: fine (step bad on node n1)"), r.stderr)
		got := decode(t, r.stdout).(map[string]any)
		assert.Equal(t, "r3", got["id"])
		assert.Equal(t, map[string]any{"ok": "fine"}, got["results"])
		assert.Equal(t, "FUNCTION_ERROR", got["error"].(map[string]any)["code"])
	})
	t.Run("cycle", func(t *testing.T) {
		r := mpreg(t, opts{stdin: `{"cmds":[{"name":"a","fun":"echo","args":["b"]},{"name":"b","fun":"echo","args":["a"]}]}`},
			"run", "-", "--servers", url)
		assert.Equal(t, 1, r.code)
		assert.True(t, strings.HasPrefix(r.stderr, "INVALID_REQUEST: "), r.stderr)
		got := decode(t, r.stdout).(map[string]any)
		assert.NotNil(t, got["error"].(map[string]any)["details"].(map[string]any)["cycle"])
	})
	t.Run("bad JSON", func(t *testing.T) {
		r := mpreg(t, opts{stdin: `{"cmds": [`}, "run", "-", "--servers", url)
		assert.Equal(t, 2, r.code)
		assert.Contains(t, r.stderr, "not valid JSON")
	})
	t.Run("not a request", func(t *testing.T) {
		// INVALID_REQUEST with exit 1, as when a node finds the fault.
		r := mpreg(t, opts{stdin: `{"cmds": "echo"}`}, "run", "-", "--servers", url)
		assert.Equal(t, 1, r.code)
		assert.Equal(t, "INVALID_REQUEST: cmds: want list, got string\n", r.stderr)
		r = mpreg(t, opts{stdin: `{"cmds": [{"name": "a", "fun": "echo", "args": ["a"]}]}`}, "run", "-", "--servers", url)
		assert.Equal(t, 1, r.code)
		assert.Contains(t, r.stderr, "INVALID_REQUEST: ")
	})
}

func TestPeers(t *testing.T) {
	t.Parallel()
	url := cluster(t)
	t.Run("json", func(t *testing.T) {
		r := mpreg(t, opts{}, "peers", "--json", "--servers", url)
		require.Equal(t, 0, r.code, r.stderr)
		var peers []peerJSON
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &peers))
		require.Len(t, peers, 1)
		p := peers[0]
		assert.Equal(t, "n1", p.Node)
		assert.True(t, p.Alive)
		assert.Equal(t, []string{"cpu"}, p.Funs["add"])
		assert.Contains(t, p.Funs, "whoami")
		assert.Contains(t, p.Codecs, "application/json")
		assert.Less(t, p.LastHeardAgoMS, int64(10_000))
	})
	t.Run("table", func(t *testing.T) {
		r := mpreg(t, opts{}, "peers", "--servers", url)
		require.Equal(t, 0, r.code, r.stderr)
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		require.Len(t, lines, 2)
		assert.Regexp(t, `^NODE\s+NAME\s+ALIVE\s+LAST HEARD\s+CODECS\s+FUNCTIONS \[LOCS\]$`, lines[0])
		assert.Regexp(t, `^n1\s+-\s+yes\s+\d+\.\ds ago\s+msgpack,json\s+add, blob, echo, echos, fail, flaky, length, panic, sha256, sleep, tally, upper, whoami \[cpu\]$`, lines[1])
	})
	t.Run("empty cluster", func(t *testing.T) {
		r := mpreg(t, opts{}, "peers", "--servers", url, "--cluster", "empty")
		require.Equal(t, 0, r.code, r.stderr)
		assert.Equal(t, "no nodes\n", r.stdout)
	})
}

func TestEnvironment(t *testing.T) {
	t.Parallel()
	url := cluster(t)
	r := mpreg(t, opts{env: []string{"MPREG_SERVERS=" + url}}, "call", "whoami")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "\"n1\"\n", r.stdout)

	r = mpreg(t, opts{env: []string{"MPREG_SERVERS=" + url, "MPREG_CLUSTER=elsewhere"}}, "call", "whoami")
	assert.Equal(t, 1, r.code)
	assert.True(t, strings.HasPrefix(r.stderr, "NO_ROUTE: "), r.stderr)

	r = mpreg(t, opts{env: []string{"MPREG_SERVERS=" + url, "MPREG_CLUSTER=elsewhere"}}, "call", "whoami", "--cluster", "default")
	assert.Equal(t, 0, r.code, "a flag wins over the environment: %s", r.stderr)

	r = mpreg(t, opts{env: []string{"MPREG_SERVERS=" + url, "MPREG_TIMEOUT=soon"}}, "call", "whoami")
	assert.Equal(t, 2, r.code)
}

func TestConfigFile(t *testing.T) {
	t.Parallel()
	url := cluster(t)
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	require.NoError(t, os.WriteFile(good, []byte(fmt.Sprintf(`{"servers": %q, "cluster": "default", "timeout": "5s"}`, url)), 0o600))
	list := filepath.Join(dir, "list.json")
	require.NoError(t, os.WriteFile(list, []byte(fmt.Sprintf(`{"servers": [%q], "locs": ["cpu"]}`, url)), 0o600))
	bad := filepath.Join(dir, "bad.json")
	require.NoError(t, os.WriteFile(bad, []byte(`{"servers": `), 0o600))

	r := mpreg(t, opts{}, "call", "whoami", "--config", good)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "\"n1\"\n", r.stdout)

	r = mpreg(t, opts{}, "peers", "--config", list, "--json")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, `"node": "n1"`)

	r = mpreg(t, opts{env: []string{"MPREG_CONFIG=" + good}}, "call", "whoami")
	assert.Equal(t, 0, r.code, r.stderr)

	r = mpreg(t, opts{env: []string{"MPREG_CLUSTER=elsewhere"}}, "call", "whoami", "--config", good)
	assert.Equal(t, 1, r.code, "the environment wins over the file")

	r = mpreg(t, opts{}, "call", "whoami", "--config", bad)
	assert.Equal(t, 2, r.code)
	assert.Contains(t, r.stderr, "config file "+bad)

	// Keys are flag names with "-" or "_"; anything else is an error, not
	// silently ignored.
	dashed := filepath.Join(dir, "dashed.json")
	require.NoError(t, os.WriteFile(dashed, []byte(fmt.Sprintf(`{"servers": %q, "node-id": "x", "drain_timeout": "1s", "maxInflight": 4}`, url)), 0o600))
	r = mpreg(t, opts{}, "call", "whoami", "--config", dashed)
	assert.Equal(t, 0, r.code, r.stderr)
	typo := filepath.Join(dir, "typo.json")
	require.NoError(t, os.WriteFile(typo, []byte(fmt.Sprintf(`{"servers": %q, "sevrers": "x"}`, url)), 0o600))
	r = mpreg(t, opts{}, "call", "whoami", "--config", typo)
	assert.Equal(t, 2, r.code)
	assert.Contains(t, r.stderr, `"sevrers" is not a flag of mpreg`)
}

func TestVersionAndHelp(t *testing.T) {
	t.Parallel()
	r := mpreg(t, opts{}, "--version")
	assert.Equal(t, 0, r.code)
	assert.True(t, strings.HasPrefix(r.stdout, "mpreg "+node.Version+" ("), r.stdout)
	for _, cmd := range []string{"server", "node", "call", "run", "peers", "demo", "bench"} {
		r := mpreg(t, opts{}, cmd, "--help")
		assert.Equal(t, 0, r.code, cmd)
		assert.Contains(t, r.stdout, "Usage: mpreg "+cmd, cmd)
	}
	r = mpreg(t, opts{}, "--help")
	assert.Equal(t, 0, r.code)
	for _, want := range []string{"server", "node", "call", "run", "peers", "demo", "bench", "--config", "--version"} {
		assert.Contains(t, r.stdout, want)
	}
}

func TestServerCommand(t *testing.T) {
	t.Parallel()
	port := testcluster.FreePort(t)
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	d := startDaemon(t, "server", "--listen", fmt.Sprintf("127.0.0.1:%d", port), "--demo",
		"--node-id", "srv1", "--locs", "gpu,model-a", "--drain-timeout", "5s")
	d.waitFor(t, "the server's node to answer", func() error {
		r := mpreg(t, opts{}, "call", "whoami", "--loc", "gpu", "--servers", url, "--timeout", "2s")
		if r.code != 0 || r.stdout != "\"srv1\"\n" {
			return fmt.Errorf("exit %d: %s%s", r.code, r.stdout, r.stderr)
		}
		return nil
	})
	assert.Contains(t, d.stderr.String(), "msg=listening url="+url)
	d.stop(t, syscall.SIGTERM, 0)
	assert.Contains(t, d.stderr.String(), "msg=stopped")
}

func TestNodeCommand(t *testing.T) {
	t.Parallel()
	s := testcluster.Server(t)
	d := startDaemon(t, "node", "--servers", s.ClientURL(), "--node-id", "cli1", "--name", "from the cli",
		"--cluster", "c2", "--locs", "dataset-a", "--demo", "--log-level", "debug")
	d.waitFor(t, "the node to answer", func() error {
		r := mpreg(t, opts{}, "call", "whoami", "--loc", "dataset-a", "--servers", s.ClientURL(), "--cluster", "c2", "--timeout", "2s")
		if r.code != 0 || r.stdout != "\"cli1\"\n" {
			return fmt.Errorf("exit %d: %s%s", r.code, r.stdout, r.stderr)
		}
		return nil
	})
	r := mpreg(t, opts{}, "peers", "--servers", s.ClientURL(), "--cluster", "c2")
	assert.Regexp(t, `(?m)^cli1\s+from the cli\s+yes\s`, r.stdout)
	d.stop(t, syscall.SIGINT, 0)
}

// TestMaxWaitingFlag: --max-waiting bounds the steps waiting for a route
// at once; past it a request is answered OVERLOADED naming the limit.
func TestMaxWaitingFlag(t *testing.T) {
	t.Parallel()
	s := testcluster.Server(t)
	d := startDaemon(t, "node", "--servers", s.ClientURL(), "--node-id", "wait1", "--max-waiting", "1")
	d.waitFor(t, "the node to answer", func() error {
		r := mpreg(t, opts{}, "call", "echo", "1", "--servers", s.ClientURL(), "--timeout", "2s")
		if r.code != 0 {
			return fmt.Errorf("exit %d: %s%s", r.code, r.stdout, r.stderr)
		}
		return nil
	})
	r := mpreg(t, opts{stdin: `{"route_wait_ms": 60000, "timeout_ms": 10000, "cmds": [
		{"name": "a", "fun": "never"}, {"name": "b", "fun": "nowhere"}]}`}, "run", "-", "--servers", s.ClientURL())
	assert.Equal(t, 1, r.code)
	assert.True(t, strings.HasPrefix(r.stderr, "OVERLOADED: "), r.stderr)
	e := decode(t, r.stdout).(map[string]any)["error"].(map[string]any)
	assert.Equal(t, map[string]any{"limit": "max_waiting", "max": float64(1)}, e["details"])
	d.stop(t, syscall.SIGTERM, 0)
}

func TestDemoCommand(t *testing.T) {
	t.Parallel()
	// The tour moves a 50 MB value between nodes: slow under the race
	// detector.
	r := mpreg(t, opts{wait: 2 * time.Minute}, "demo")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "NO_ROUTE: no live node offers whoami with locs [tpu]")
	assert.Regexp(t, `(?m)^Done in \S+: 11 requests, 8 succeeded and 3 failed as expected`, r.stdout)
}

func TestHelpers(t *testing.T) {
	for in, want := range map[string]any{
		`1`: int64(1), `1.5`: 1.5, `"x"`: "x", `x`: "x", `true`: true, `null`: nil,
		`[1,"a"]`: []any{int64(1), "a"}, `{"a":{}}`: map[string]any{"a": map[string]any{}},
		`{bad`: "{bad", ``: "", `1 2`: "1 2",
	} {
		assert.Equal(t, want, jsonOrString(in), "jsonOrString(%q)", in)
	}
	assert.Equal(t, "x; add, echo [cpu]; train [cpu gpu]",
		funsByLocs(map[string][]string{"echo": {"cpu"}, "add": {"cpu"}, "train": {"cpu", "gpu"}, "x": {}}))
}

// daemon is a long-running mpreg process (server or node).
type daemon struct {
	cmd    *exec.Cmd
	stderr *testwait.Buffer // and stdout
	exited chan struct{}
	err    error // set before exited is closed
}

func startDaemon(t *testing.T, args ...string) *daemon {
	t.Helper()
	return startDaemonEnv(t, nil, args...)
}

// dataHome is XDG_DATA_HOME set to a new t.TempDir(): the default
// JetStream store of `mpreg server` is a test's own.
func dataHome(t *testing.T) string { return "XDG_DATA_HOME=" + t.TempDir() }

// startDaemonEnv starts the binary as startDaemon does, with env added to
// its environment.
func startDaemonEnv(t *testing.T, env []string, args ...string) *daemon {
	t.Helper()
	d := &daemon{cmd: exec.Command(bin, args...), stderr: &testwait.Buffer{}, exited: make(chan struct{})}
	d.cmd.Env = cleanEnv(append([]string{dataHome(t)}, env...)...)
	d.cmd.Stderr = d.stderr
	d.cmd.Stdout = d.stderr
	require.NoError(t, d.cmd.Start())
	go func() {
		d.err = d.cmd.Wait()
		close(d.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-d.exited:
		default:
			_ = d.cmd.Process.Kill()
			<-d.exited
		}
		t.Logf("mpreg %s stderr:\n%s", strings.Join(args, " "), d.stderr.String())
	})
	return d
}

// waitFor polls check until it returns nil, failing at once if the daemon
// exits.
func (d *daemon) waitFor(t *testing.T, what string, check func() error) {
	t.Helper()
	testcluster.WaitFor(t, what, func() error {
		select {
		case <-d.exited:
			t.Fatalf("mpreg exited early (%v):\n%s", d.err, d.stderr.String())
		default:
		}
		return check()
	})
}

// stop sends sig and waits for the exit code want.
func (d *daemon) stop(t *testing.T, sig os.Signal, want int) {
	t.Helper()
	require.NoError(t, d.cmd.Process.Signal(sig))
	select {
	case <-d.exited:
	case <-time.After(15 * time.Second):
		t.Fatalf("mpreg did not exit after %s:\n%s", sig, d.stderr.String())
	}
	code := 0
	var ee *exec.ExitError
	if errors.As(d.err, &ee) {
		code = ee.ExitCode()
	} else if d.err != nil {
		t.Fatalf("wait: %v", d.err)
	}
	assert.Equal(t, want, code, "exit code after %s", sig)
}

func TestByteSizes(t *testing.T) {
	for in, want := range map[string]int64{"512": 512, "64KiB": 64 << 10, "64MiB": 64 << 20, "1GiB": 1 << 30, "2 MB": 2 << 20, "3k": 3 << 10, "7B": 7} {
		n, err := parseByteSize(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, n, in)
	}
	for _, bad := range []string{"", "0", "-1", "x", "1TiB", "9999999999999GiB"} {
		_, err := parseByteSize(bad)
		assert.Error(t, err, bad)
	}
	for _, n := range []int64{512, 64 << 10, 64 << 20, 1 << 30, 3 << 30, 1<<20 + 1} {
		back, err := parseByteSize(formatByteSize(n))
		require.NoError(t, err, n)
		assert.Equal(t, n, back, formatByteSize(n))
	}
	assert.Equal(t, "64MiB", formatByteSize(64<<20))
	assert.Equal(t, "1GiB", formatByteSize(1<<30))
	assert.Equal(t, "1025KiB", formatByteSize(1025<<10))
	r := mpreg(t, opts{}, "node", "--max-result-bytes", "lots", "--servers", "nats://127.0.0.1:1")
	assert.Equal(t, 2, r.code)
	assert.Contains(t, r.stderr, "--max-result-bytes")
}

// The requests under examples/requests, which the README runs, stay valid
// and give what the README shows.
func TestExampleRequests(t *testing.T) {
	t.Parallel()
	url := cluster(t)
	testcluster.Node(t, url, testcluster.NodeConfig(t, "n2", "dataset-a"), func(n *node.Node) {
		require.NoError(t, demo.Register(n))
	})
	want := map[string]struct {
		code    int
		results string
	}{
		"readme.json":   {0, `{"|second":"hi there!","|third":["hi there!","AND ME TOO"]}`},
		"parallel.json": {0, `{"|join":["slept 300 ms",4]}`},
		"ref-path.json": {0, `{"|pair":["left",{"k":["a","b"]}],"|pick":"B"}`},
		"cycle.json":    {1, `{}`},
		// flaky fails twice per node and is tried up to 5 times: whichever
		// node it ends on, it ends on its third call there.
		"nightly.json": {0, `{"|report":[3,1]}`},
	}
	files, err := filepath.Glob("../../examples/requests/*.json")
	require.NoError(t, err)
	require.Len(t, files, len(want))
	for _, f := range files {
		w, ok := want[filepath.Base(f)]
		require.True(t, ok, f)
		var r result
		testcluster.WaitFor(t, "the request to be served", func() error {
			r = mpreg(t, opts{}, "run", f, "--servers", url)
			if r.code != w.code {
				return fmt.Errorf("exit %d: %s", r.code, r.stderr)
			}
			return nil
		})
		var resp struct{ Results json.RawMessage }
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &resp), r.stdout)
		assert.JSONEq(t, w.results, string(resp.Results), f)
	}
}

func TestVersionCommand(t *testing.T) {
	r := mpreg(t, opts{}, "version")
	require.Equal(t, 0, r.code)
	require.Regexp(t, `^mpreg `+regexp.QuoteMeta(node.Version)+` \((commit [0-9a-f]{12}(, modified)?, [^,]+, )?go1\.\d+`, r.stdout)
	require.Equal(t, r.stdout, mpreg(t, opts{}, "--version").stdout)
}

func TestCompletion(t *testing.T) {
	bash := mpreg(t, opts{}, "completion", "bash")
	require.Equal(t, 0, bash.code)
	script := filepath.Join(t.TempDir(), "mpreg.bash")
	require.NoError(t, os.WriteFile(script, []byte(bash.stdout), 0o600))
	complete := func(words ...string) string {
		t.Helper()
		cmd := exec.Command("bash", "-c", `source "$0"; COMP_WORDS=("${@}"); COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 )); _mpreg; echo "${COMPREPLY[*]}"`, script)
		cmd.Args = append(cmd.Args, words...)
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, string(out))
		return strings.TrimSpace(string(out))
	}
	require.Equal(t, "node", complete("mpreg", "no"))
	require.Equal(t, "--metrics-listen", complete("mpreg", "node", "--metr"))
	require.Equal(t, "--log-format --log-level", complete("mpreg", "call", "--log"))
	require.Contains(t, strings.Fields(complete("mpreg", "server", "--")), "--nats-config")

	zsh := mpreg(t, opts{}, "completion", "zsh")
	require.Equal(t, 0, zsh.code)
	require.Contains(t, zsh.stdout, "bashcompinit")
	fish := mpreg(t, opts{}, "completion", "fish")
	require.Equal(t, 0, fish.code)
	require.Contains(t, fish.stdout, "complete -c mpreg -n '__fish_seen_subcommand_from peers' -l json -d 'Print a JSON list instead of a table'")
	require.Equal(t, 2, mpreg(t, opts{}, "completion", "tcsh").code)
}

// TestPeersWatch: without a terminal, peers --watch prints one line per
// change (a node joining, its load, its leaving) and Ctrl-C ends it with 0.
func TestPeersWatch(t *testing.T) {
	s := testcluster.Server(t)
	url := s.ClientURL()
	w := startDaemon(t, "peers", "--watch", "--servers", url)
	block := make(chan struct{})
	var once sync.Once
	release := func() { once.Do(func() { close(block) }) }
	t.Cleanup(release)
	n := testcluster.Node(t, url, testcluster.NodeConfig(t, "watched"), func(n *node.Node) {
		require.NoError(t, n.Register("hold", func() { <-block }))
	})
	waitJoined(t, w, "watched", "echo, echos, hold")
	cl := testcluster.Client(t, url, client.Config{})
	go func() { _, _ = cl.Call(context.Background(), "hold", nil) }()
	w.waitFor(t, "the load line", func() error {
		if !strings.Contains(w.stderr.String(), " watched inflight 0 -> 1\n") {
			return errors.New("not yet")
		}
		return nil
	})
	release()
	w.waitFor(t, "the load line back to 0", func() error {
		if !strings.Contains(w.stderr.String(), " watched inflight 1 -> 0\n") {
			return errors.New("not yet")
		}
		return nil
	})
	// A drained node says goodbye; a watcher that checks the goodbye with
	// the node after it has closed (a slow machine) sees it fall silent
	// instead: either line reports its end.
	require.NoError(t, n.Drain(context.Background()))
	w.waitFor(t, "the leave line", func() error {
		if !regexp.MustCompile(` watched (left|alive -> dead)\n`).MatchString(w.stderr.String()) {
			return errors.New("not yet")
		}
		return nil
	})
	w.stop(t, os.Interrupt, 0)
}

// waitJoined waits for peers --watch to show node's join line with its
// limit of 256 steps in flight: in the line itself when a heartbeat came
// before it, else in a "limit ? -> 256" line after it (a node learned
// from its hello has no load yet). It never shows a limit of 0.
func waitJoined(t *testing.T, w *daemon, node, funs string) {
	t.Helper()
	joined := regexp.MustCompile(`(?m)^\S+ ` + node + ` joined: alive, inflight 0/(256|\?), funs ` + funs + `$`)
	limit := regexp.MustCompile(`(?m)^\S+ ` + node + ` limit \? -> 256$`)
	w.waitFor(t, "the join line and the node's limit", func() error {
		out := w.stderr.String()
		m := joined.FindStringSubmatch(out)
		if m == nil || (m[1] == "?" && !limit.MatchString(out)) {
			return errors.New("not yet")
		}
		return nil
	})
	require.NotContains(t, w.stderr.String(), "/0,")
}

// TestPeersWatchLimit: a node that was up before peers --watch started is
// learned from its hello, which has no load: its limit shows as "?", then
// as the limit its first heartbeat gives, never as 0.
func TestPeersWatchLimit(t *testing.T) {
	t.Parallel()
	s := testcluster.Server(t)
	cfg := testcluster.NodeConfig(t, "early")
	cfg.Gossip.HeartbeatInterval = time.Second
	testcluster.Node(t, s.ClientURL(), cfg, nil)
	w := startDaemon(t, "peers", "--watch", "--servers", s.ClientURL())
	waitJoined(t, w, "early", "echo, echos")
	w.stop(t, os.Interrupt, 0)
}

// TestLeafNodeFlags: `mpreg server --leafnode-remote` at a site joins a
// hub started with --leafnode-listen, and a call at the hub runs at the
// site.
func TestLeafNodeFlags(t *testing.T) {
	hubPort, leafPort, sitePort := testcluster.FreePort(t), testcluster.FreePort(t), testcluster.FreePort(t)
	hubURL := fmt.Sprintf("nats://127.0.0.1:%d", hubPort)
	startDaemon(t, "server", "--listen", fmt.Sprintf("127.0.0.1:%d", hubPort), "--leafnode-listen", fmt.Sprintf("127.0.0.1:%d", leafPort),
		"--node-id", "hub", "--demo")
	site := startDaemon(t, "server", "--listen", fmt.Sprintf("127.0.0.1:%d", sitePort),
		"--leafnode-remote", fmt.Sprintf("nats-leaf://127.0.0.1:%d", leafPort), "--node-id", "site", "--locs", "site", "--demo")
	site.waitFor(t, "the site's node to answer at the hub", func() error {
		r := mpreg(t, opts{}, "call", "whoami", "--loc", "site", "--servers", hubURL, "--timeout", "2s")
		if r.code != 0 || r.stdout != "\"site\"\n" {
			return fmt.Errorf("exit %d: %s%s", r.code, r.stdout, r.stderr)
		}
		return nil
	})
	require.Contains(t, site.stderr.String(), "leafnode_remotes=[nats-leaf://127.0.0.1:")
}

// TestCancelCommand: mpreg cancel ID stops a running request by its id and
// says which node stopped it; its caller gets CANCELLED. An id no node
// knows is exit 1.
func TestCancelCommand(t *testing.T) {
	s := testcluster.Server(t)
	n := testcluster.Node(t, s.ClientURL(), testcluster.NodeConfig(t, "n1", "cpu"), func(n *node.Node) {
		require.NoError(t, demo.Register(n))
	})
	url := s.ClientURL()
	nc, err := nats.Connect(url)
	require.NoError(t, err)
	defer nc.Close()
	done := make(chan *nats.Msg, 1)
	go func() {
		m, _ := nc.Request("mpreg.default.rpc", []byte(`{"id": "to-cancel", "cmds": [{"name": "s", "fun": "sleep", "args": [20000, "x"]}]}`), 30*time.Second)
		done <- m
	}()
	testcluster.WaitFor(t, "the request to run", func() error {
		if n.Stats().Inflight != 1 {
			return errors.New("not running yet")
		}
		return nil
	})
	r := mpreg(t, opts{}, "cancel", "to-cancel", "--servers", url)
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, "cancelled request \"to-cancel\" on n1\n", r.stdout)
	m := testwait.Recv(t, done, "the cancelled request's reply")
	require.NotNil(t, m)
	require.Contains(t, string(m.Data), `"code":"CANCELLED"`)

	r = mpreg(t, opts{}, "cancel", "to-cancel", "--servers", url, "--wait", "300ms")
	require.Equal(t, 1, r.code)
	require.Empty(t, r.stdout)
	require.Equal(t, "mpreg: no node knew request \"to-cancel\": none answered within 300ms\n", r.stderr)
	require.Equal(t, 2, mpreg(t, opts{}, "cancel").code, "an id is required")
}

// TestCallID: mpreg call --id names the request, --verbose prints its id
// on stderr before sending, and mpreg cancel ID stops the call from
// another process. mpreg run --verbose prints the file's id.
func TestCallID(t *testing.T) {
	s := testcluster.Server(t)
	n := testcluster.Node(t, s.ClientURL(), testcluster.NodeConfig(t, "n1", "cpu"), func(n *node.Node) {
		require.NoError(t, demo.Register(n))
	})
	url := s.ClientURL()
	call := startDaemon(t, "call", "sleep", "20000", "x", "--id", "call-7", "--verbose", "--servers", url)
	call.waitFor(t, "the call to run", func() error {
		if n.Stats().Inflight != 1 || !strings.Contains(call.stderr.String(), "mpreg: request call-7\n") {
			return errors.New("not running yet")
		}
		return nil
	})
	r := mpreg(t, opts{}, "cancel", "call-7", "--servers", url)
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, "cancelled request \"call-7\" on n1\n", r.stdout)
	select {
	case <-call.exited:
	case <-time.After(15 * time.Second):
		t.Fatal("the cancelled call did not exit")
	}
	require.Equal(t, "mpreg: request call-7\nCANCELLED: the step was cancelled (step sleep on node n1)\n", call.stderr.String())

	r = mpreg(t, opts{}, "call", "add", "1", "2", "--verbose", "--servers", url)
	require.Equal(t, 0, r.code, r.stderr)
	require.Regexp(t, `^mpreg: request \S+\n$`, r.stderr, "a new id when none is given")
	r = mpreg(t, opts{stdin: `{"id": "run-9", "cmds": [{"name": "a", "fun": "add", "args": [1, 2]}]}`}, "run", "-", "--verbose", "--servers", url)
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, "mpreg: request run-9\n", r.stderr)
	r = mpreg(t, opts{stdin: `{"cmds": [{"name": "a", "fun": "add", "args": [1, 2]}]}`}, "run", "-", "--trace", "--servers", url)
	require.Equal(t, 0, r.code, r.stderr)
	id := regexp.MustCompile(`^mpreg: request (\S+)\n`).FindStringSubmatch(r.stderr)
	require.NotNil(t, id, "the trace names the request: %s", r.stderr)
	require.Contains(t, r.stdout, `"id": "`+id[1]+`"`)
}

// TestTraceFlags: --trace prints where each step ran on stderr, the result
// stays alone on stdout.
func TestTraceFlags(t *testing.T) {
	url := cluster(t)
	r := mpreg(t, opts{}, "call", "add", "2", "3", "--trace", "--servers", url)
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, "5\n", r.stdout)
	require.Regexp(t, `(?m)^STEP\s+FUN\s+NODE\s+ATTEMPT\s+START\s+QUEUE\s+RUN\s+OUTCOME\nadd\s+add\s+n1\s+1\s+\S+\s+\S+\s+\S+\s+ok$`, r.stderr)

	r = mpreg(t, opts{stdin: `{"cmds": [{"name": "a", "fun": "add", "args": [1, 2]}, {"name": "b", "fun": "add", "args": ["a", 1]}]}`},
		"run", "-", "--trace", "--servers", url)
	require.Equal(t, 0, r.code, r.stderr)
	require.Regexp(t, `(?m)^a\s+add\s+n1\s+1\s.*ok$`, r.stderr)
	require.Regexp(t, `(?m)^b\s+add\s+n1\s+1\s.*ok$`, r.stderr)
	require.Contains(t, r.stdout, `"trace": [`)
	require.NotContains(t, r.stderr, "truncated")

	// A trace the planner cut says so under the table.
	var b bytes.Buffer
	printTrace(&b, []schema.TraceEntry{{Step: "a", Fun: "add", Node: "n1", Attempt: 1, Code: "ok"}}, true)
	require.Regexp(t, `(?m)^a\s+add\s+n1\s+1\s.*ok\n\(trace truncated: .*\)$`, b.String())
}

// TestExplainAndDot: run --explain prints the plan as a table and exits 1
// on problems; --dot prints Graphviz that dot accepts; neither runs a step.
func TestExplainAndDot(t *testing.T) {
	url := cluster(t)
	req := `{"cmds": [{"name": "a", "fun": "add", "args": [1, 2]}, {"name": "b", "fun": "upper", "args": ["a"], "locs": ["cpu"]},
		{"name": "c \"q\"", "fun": "train", "args": ["b"], "locs": ["tpu"]}]}`
	r := mpreg(t, opts{stdin: req}, "run", "-", "--explain", "--servers", url)
	require.Equal(t, 1, r.code)
	require.Regexp(t, `(?m)^STEP\s+FUN\s+LOCS\s+WAITS FOR\s+CANDIDATES\s+PICK$`, r.stdout)
	require.Regexp(t, `(?m)^a\s+add\s+-\s+-\s+n1\s+n1$`, r.stdout)
	require.Regexp(t, `(?m)^b\s+upper\s+cpu\s+a\s+n1\s+n1$`, r.stdout)
	require.Regexp(t, `(?m)^c "q"\s+train\s+tpu\s+b\s+-\s+-$`, r.stdout)
	require.Contains(t, r.stdout, "NO_ROUTE: no live node offers train with locs [tpu]")

	r = mpreg(t, opts{stdin: req}, "run", "-", "--dot", "--servers", url)
	require.Equal(t, 0, r.code, r.stderr)
	graph := r.stdout
	require.Contains(t, r.stdout, `"a" [label="a: add @ n1"];`)
	require.Contains(t, r.stdout, `"c \"q\"" [label="c \"q\": train @ ?", color=red, style=dashed];`)
	require.Contains(t, r.stdout, `"b" -> "c \"q\"";`)

	// A request that does not plan prints no graph: its error goes to
	// stderr with exit 1, as with --explain.
	r = mpreg(t, opts{}, "run", "../../examples/requests/cycle.json", "--dot", "--servers", url)
	require.Equal(t, 1, r.code)
	require.Empty(t, r.stdout)
	require.Equal(t, "INVALID_REQUEST: dependency cycle: |a -> |c -> |b -> |a\n", r.stderr)
	if _, err := exec.LookPath("dot"); err != nil {
		t.Skip("graphviz's dot is not installed: the DOT text is checked above, not rendered")
	}
	cmd := exec.Command("dot", "-Tsvg")
	cmd.Stdin = strings.NewReader(graph)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, string(out))
	require.Contains(t, string(out), "<svg")
}

// TestRunProgress: run --progress prints the planned event and a line per
// finished step on stderr; the response stays on stdout.
func TestRunProgress(t *testing.T) {
	url := cluster(t)
	r := mpreg(t, opts{stdin: `{"cmds": [{"name": "a", "fun": "add", "args": [1, 2]}, {"name": "b", "fun": "add", "args": ["a", 1]}]}`},
		"run", "-", "--progress", "--servers", url)
	require.Equal(t, 0, r.code, r.stderr)
	require.Regexp(t, `(?m)^\S+ planned by n1: 2 steps\n\S+ step a \(add\) on n1: ok, ran \S+ \[1/2\]\n\S+ step b \(add\) on n1: ok, ran \S+ \[2/2\]$`, r.stderr)
	require.Contains(t, r.stdout, `"b": 4`)
}

// TestRunWarnings: a string argument that looks like a mistyped reference
// runs as the string itself, and mpreg run says so on stderr; --explain
// lists it with the plan (no problems: exit 0).
func TestRunWarnings(t *testing.T) {
	url := cluster(t)
	req := `{"cmds": [{"name": "|a", "fun": "echo", "args": ["|frist"]}]}`
	warning := `step |a: cmds[0].args[0]: "|frist" starts with "|" but names no command: it is passed as the string itself`
	r := mpreg(t, opts{stdin: req}, "run", "-", "--servers", url)
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, "mpreg: warning: "+warning+"\n", r.stderr)
	require.Contains(t, r.stdout, `"|a": "|frist"`)

	r = mpreg(t, opts{stdin: req}, "run", "-", "--explain", "--servers", url)
	require.Equal(t, 0, r.code, r.stderr)
	require.Empty(t, r.stderr)
	require.Contains(t, r.stdout, "\nno problems: the request can run now\n\n1 warning(s):\n  "+warning+"\n")

	r = mpreg(t, opts{stdin: `{"cmds": [{"name": "|a", "fun": "echo", "args": ["hello"]}]}`}, "run", "-", "--servers", url)
	require.Equal(t, 0, r.code, r.stderr)
	require.Empty(t, r.stderr)
}

// The node flags' defaults are node.DefaultConfig's, and --help shows them.
func TestNodeFlagDefaults(t *testing.T) {
	for _, cmd := range []string{"server", "node"} {
		var c cli
		parser, err := newParser(&c, io.Discard, io.Discard)
		require.NoError(t, err)
		_, err = parser.Parse([]string{cmd})
		require.NoError(t, err, cmd)
		f := c.Server.nodeFlags
		if cmd == "node" {
			f = c.Node.nodeFlags
		}
		cfg, err := f.config(nil)
		require.NoError(t, err)
		d := node.DefaultConfig()
		assert.Equal(t, d.Cluster, cfg.Cluster, cmd)
		assert.Equal(t, d.Cluster, c.Call.Cluster, "the callers' cluster")
		got, want := cfg.Limits, d.Limits
		// Not flags: New takes their defaults.
		got.MaxNameLen, got.MaxDepth, got.DefaultTimeout, got.MaxTimeout = want.MaxNameLen, want.MaxDepth, want.DefaultTimeout, want.MaxTimeout
		// At its default the result bound is left to New, which keeps it
		// under the planning bytes.
		assert.Zero(t, got.MaxResultBytes, cmd)
		got.MaxResultBytes = want.MaxResultBytes
		assert.Equal(t, want, got, cmd)
		gotObj, wantObj := cfg.Objects, d.Objects
		// Not flags: New takes their defaults.
		gotObj.MaxPendingDeletes, gotObj.JetStreamProbe = wantObj.MaxPendingDeletes, wantObj.JetStreamProbe
		assert.Equal(t, wantObj, gotObj, cmd)
		require.NoError(t, cfg.Validate(), cmd)
	}
	r := mpreg(t, opts{}, "server", "--help")
	require.Equal(t, 0, r.code)
	for _, want := range []string{"--cluster=\"default\"", "--max-inflight=256", "--max-queue=1024", "--max-commands=1000",
		"--max-requests=4096", "--max-bytes-in-flight=64MiB", "--max-planning-bytes=1GiB", "--max-result-bytes=512MiB",
		"--max-waiting=10000", "--inline-max=256KiB", "--max-object-bytes=1GiB", "--object-cache=256MiB",
		"--object-ttl=1h", "--result-ttl=10m"} {
		assert.Contains(t, r.stdout, want)
	}
}

// A flag value Validate refuses is a usage error naming the field.
func TestNodeFlagsValidated(t *testing.T) {
	r := mpreg(t, opts{}, "node", "--max-queue=-1", "--servers", "nats://127.0.0.1:1")
	assert.Equal(t, 2, r.code, r.stderr)
	assert.Contains(t, r.stderr, "Limits.MaxQueue (-1) must not be negative")
	r = mpreg(t, opts{}, "node", "--max-result-bytes", "2GiB", "--servers", "nats://127.0.0.1:1")
	assert.Equal(t, 2, r.code, r.stderr)
	assert.Contains(t, r.stderr, "Limits.MaxResultBytes (2147483648) must be at most Limits.MaxPlanningBytes (1073741824)")
	r = mpreg(t, opts{}, "node", "--object-ttl", "500ms", "--servers", "nats://127.0.0.1:1")
	assert.Equal(t, 2, r.code, r.stderr)
	assert.Contains(t, r.stderr, "Objects.TTL (500ms) must be at least 1s")
	r = mpreg(t, opts{}, "node", "--result-ttl=-1s", "--servers", "nats://127.0.0.1:1")
	assert.Equal(t, 2, r.code, r.stderr)
	assert.Contains(t, r.stderr, "Objects.ResultTTL (-1s) must not be negative")
}

// --max-planning-bytes alone below the default --max-result-bytes is
// accepted: the result bound, left at its default, follows it down.
func TestPlanningBytesAlone(t *testing.T) {
	d := node.DefaultConfig().Limits
	f := limitFlags{MaxInflight: d.MaxInflight, MaxQueue: d.MaxQueue, MaxCommands: d.MaxCommands, MaxRequests: d.MaxRequests,
		MaxBytesInFlight: byteSize(d.MaxBytesInFlight), MaxPlanningBytes: 256 << 20, MaxResultBytes: byteSize(d.MaxResultBytes),
		MaxWaiting: d.MaxWaiting}
	cfg := node.Config{NodeID: "n1", Limits: f.limits()}
	require.NoError(t, cfg.Validate())
	f.MaxResultBytes = 300 << 20 // given explicitly, above the planning bytes: refused
	cfg = node.Config{NodeID: "n1", Limits: f.limits()}
	require.ErrorContains(t, cfg.Validate(), "Limits.MaxResultBytes (314572800) must be at most Limits.MaxPlanningBytes (268435456)")
}
