package demo_test

import (
	"bytes"
	"context"
	"errors"
	"math"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/mpreg/mpreg/client"
	"github.com/mpreg/mpreg/internal/demo"
	"github.com/mpreg/mpreg/internal/testcluster"
	"github.com/mpreg/mpreg/node"
	"github.com/mpreg/mpreg/schema"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestShowcase(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp) // where the showcase's JetStream store goes
	var out bytes.Buffer
	start := time.Now()
	require.NoError(t, demo.Showcase(ctx, &out))
	took := time.Since(start)
	left, err := os.ReadDir(tmp)
	require.NoError(t, err)
	assert.Empty(t, left, "the JetStream store is removed")
	text := out.String()
	t.Log("\n" + text)
	// Most of it is the 50 MB value, written to and read from JetStream's
	// file store.
	assert.Less(t, took, 20*time.Second, "the showcase must finish in seconds")

	for _, re := range []string{
		// Every title, numbered.
		`(?m)^=== 1/11  The README example =+$`,
		`(?m)^=== 11/11  A cycle: INVALID_REQUEST =+$`,
		// Routing by loc: the step table names the node.
		`(?m)^\s+\|third\s+echos\s+gamma\s`,
		`(?m)^\s+\|gpu\s+whoami\s+beta\s`,
		`(?m)^\s+\|dataset\s+whoami\s+gamma\s`,
		`(?m)^\s+"\|gpu": "beta",?$`,
		// Integers stay integers, floats floats.
		`(?m)^\s+3\.75,$`,
		// Errors with their codes, steps and details.
		`(?m)^  FUNCTION_ERROR: disk full on /data \(step \|save on node (alpha|beta|gamma)\)$`,
		`(?m)^\s+"\|fetch": "disk full on /data"$`,
		`(?m)^  NO_ROUTE: no live node offers whoami with locs \[tpu\] \(step \|accel\)$`,
		`(?m)^  INVALID_REQUEST: dependency cycle: .*$`,
		`(?m)^  details: \{"cycle":\["\|a","\|[bc]","\|[bc]"\]\}$`,
		`(?m)^steps: none ran$`,
		// The parallel branch: |join starts after the 300 ms sleep.
		`(?m)^\s+\|join\s+echos\s+\S+\s+\+[0-9]{3}ms\s`,
		// The summary.
		// The 50 MB value: made on beta, fetched once by gamma.
		`(?m)^\s+\|data\s+blob\s+beta\s.*\s0 B\s+ok$`,
		`(?m)^\s+\|digest\s+sha256\s+gamma\s.*\s50\.0 MB\s+ok$`,
		`(?m)^\s+"\|size": 50000000$`,
		`(?m)^Done in \S+: 11 requests, 8 succeeded and 3 failed as expected; nodes drained, server stopped\.$`,
	} {
		assert.Regexp(t, regexp.MustCompile(re), text)
	}
	assert.NotContains(t, text, "unexpected")
	assert.True(t, strings.HasSuffix(text, "stopped.\n"), "the summary is the last line")
}

func TestShowcaseCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out bytes.Buffer
	err := demo.Showcase(ctx, &out)
	require.Error(t, err)
	assert.True(t, errors.Is(err, context.Canceled), "got %v", err)
}

// failingWriter fails every write.
type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestShowcaseWriteError(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := demo.Showcase(ctx, failingWriter{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "disk full")
}

func TestFunctions(t *testing.T) {
	s := testcluster.Server(t)
	testcluster.Node(t, s.ClientURL(), testcluster.NodeConfig(t, "d1", "cpu"), func(n *node.Node) {
		require.NoError(t, demo.Register(n))
	})
	c := testcluster.Client(t, s.ClientURL(), client.Config{})
	testcluster.WaitForRoute(t, c.Table(), "whoami", nil, "d1")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	for _, tc := range []struct {
		name    string
		fun     string
		args    []any
		kwargs  map[string]any
		want    any
		wantErr schema.Code
		msg     string
	}{
		{name: "add ints", fun: "add", args: []any{2, 3}, want: int64(5)},
		{name: "add negative", fun: "add", args: []any{-2, -3}, want: int64(-5)},
		{name: "add int float", fun: "add", args: []any{2, 0.5}, want: 2.5},
		{name: "add integral floats stay floats", fun: "add", args: []any{2.0, 3.0}, want: 5.0},
		{name: "add kwargs", fun: "add", kwargs: map[string]any{"a": 40, "b": 2}, want: int64(42)},
		{name: "add overflow", fun: "add", args: []any{int64(math.MaxInt64), 1}, wantErr: schema.CodeFunctionError, msg: "overflows"},
		{name: "add negative overflow", fun: "add", args: []any{int64(math.MinInt64), -1}, wantErr: schema.CodeFunctionError, msg: "overflows"},
		{name: "add string", fun: "add", args: []any{"x", 1}, wantErr: schema.CodeInvalidArgument, msg: "add: a: want a number, got string"},
		{name: "add missing", fun: "add", args: []any{1}, wantErr: schema.CodeInvalidArgument},
		{name: "upper", fun: "upper", args: []any{"go"}, want: "GO"},
		{name: "upper kwargs", fun: "upper", kwargs: map[string]any{"s": "nats"}, want: "NATS"},
		{name: "sleep value", fun: "sleep", args: []any{1, map[string]any{"k": []any{"v"}}}, want: map[string]any{"k": []any{"v"}}},
		{name: "sleep null", fun: "sleep", kwargs: map[string]any{"ms": 1}, want: nil},
		{name: "sleep huge", fun: "sleep", args: []any{int64(math.MaxInt64)}, wantErr: schema.CodeInvalidArgument, msg: "sleep: ms must be 0 to"},
		{name: "sleep negative", fun: "sleep", args: []any{-5}, wantErr: schema.CodeInvalidArgument, msg: "sleep: ms must be 0 to"},
		{name: "fail", fun: "fail", args: []any{"out of coffee"}, wantErr: schema.CodeFunctionError, msg: "out of coffee"},
		{name: "fail kwargs", fun: "fail", kwargs: map[string]any{"message": "nope"}, wantErr: schema.CodeFunctionError, msg: "nope"},
		{name: "whoami", fun: "whoami", want: "d1"},
		{name: "whoami extra arg", fun: "whoami", args: []any{1}, wantErr: schema.CodeInvalidArgument},
		{name: "panic", fun: "panic", args: []any{"at the disco"}, wantErr: schema.CodeFunctionPanic, msg: "at the disco"},
		{name: "echo still there", fun: "echo", args: []any{"x"}, want: "x"},
		{name: "blob", fun: "blob", args: []any{6}, want: []byte{0, 31, 62, 93, 124, 155}},
		{name: "blob wraps at 251", fun: "blob", args: []any{10, 3}, want: []byte{3, 34, 65, 96, 127, 158, 189, 220, 0, 31}},
		{name: "blob negative seed", fun: "blob", kwargs: map[string]any{"size": 3, "seed": -1}, want: []byte{250, 30, 61}},
		{name: "blob empty", fun: "blob", args: []any{0}, want: []byte{}},
		{name: "blob big seed", fun: "blob", args: []any{2, int64(math.MaxInt64)}, want: []byte{byte(math.MaxInt64 % 251), byte((math.MaxInt64%251 + 31) % 251)}},
		{name: "blob float seed", fun: "blob", args: []any{2, 0.5}, wantErr: schema.CodeInvalidArgument, msg: "blob: seed: want an integer"},
		{name: "blob negative", fun: "blob", args: []any{-1}, wantErr: schema.CodeInvalidArgument, msg: "blob: size must be 0 to 1073741824"},
		{name: "blob huge", fun: "blob", args: []any{int64(1) << 40}, wantErr: schema.CodeInvalidArgument, msg: "max_object_bytes"},
		{name: "sha256 string", fun: "sha256", args: []any{"abc"}, want: "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
		{name: "sha256 bytes", fun: "sha256", kwargs: map[string]any{"data": []byte("abc")}, want: "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
		{name: "sha256 empty", fun: "sha256", args: []any{""}, want: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
		{name: "sha256 null", fun: "sha256", args: []any{nil}, wantErr: schema.CodeInvalidArgument, msg: "want binary or a string"},
		{name: "sha256 number", fun: "sha256", args: []any{5}, wantErr: schema.CodeInvalidArgument},
		{name: "length utf-8", fun: "length", args: []any{"héllo"}, want: int64(6)},
		{name: "length bytes", fun: "length", args: []any{[]byte{1, 2, 3}}, want: int64(3)},
		{name: "length null", fun: "length", args: []any{nil}, wantErr: schema.CodeInvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := c.Call(ctx, tc.fun, tc.args, client.WithKwargs(tc.kwargs))
			if tc.wantErr != "" {
				var se *schema.Error
				require.ErrorAs(t, err, &se)
				assert.Equal(t, tc.wantErr, se.Code, "%v", err)
				assert.Contains(t, se.Message, tc.msg)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, v)
		})
	}

	t.Run("sleep stops when cancelled", func(t *testing.T) {
		start := time.Now()
		_, err := c.Call(ctx, "sleep", []any{10_000}, client.WithTimeout(200*time.Millisecond))
		require.Error(t, err)
		assert.ErrorIs(t, err, schema.ErrTimeout)
		assert.Less(t, time.Since(start), 5*time.Second)
	})
}

// TestBlobPattern: blob's bytes, read in pieces of any size, are
// (i*31 + seed) mod 251.
func TestBlobPattern(t *testing.T) {
	s := testcluster.Server(t)
	testcluster.Node(t, s.ClientURL(), testcluster.NodeConfig(t, "d1"), func(n *node.Node) {
		require.NoError(t, demo.Register(n))
	})
	c := testcluster.Client(t, s.ClientURL(), client.Config{})
	testcluster.WaitForRoute(t, c.Table(), "blob", nil, "d1")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, tc := range []struct{ size, seed int64 }{{251*64 + 7, 0}, {100_003, 250}, {40_000, -1000}} {
		v, err := c.Call(ctx, "blob", []any{tc.size, tc.seed})
		require.NoError(t, err)
		b := v.([]byte)
		require.Len(t, b, int(tc.size))
		for i := range b {
			want := (int64(i)*31 + tc.seed) % 251
			if want < 0 {
				want += 251
			}
			if b[i] != byte(want) {
				t.Fatalf("blob(%d, %d)[%d] = %d, want %d", tc.size, tc.seed, i, b[i], want)
			}
		}
	}
}

// tally counts per node and key; flaky fails its first calls with a key
// and is tried again by its retry policy, 100 ms then 200 ms later.
func TestCounters(t *testing.T) {
	s := testcluster.Server(t)
	testcluster.Node(t, s.ClientURL(), testcluster.NodeConfig(t, "d1"), func(n *node.Node) {
		require.NoError(t, demo.Register(n))
	})
	c := testcluster.Client(t, s.ClientURL(), client.Config{})
	testcluster.WaitForRoute(t, c.Table(), "flaky", nil, "d1")
	p, _ := c.Table().Get("d1")
	require.Equal(t, map[string]schema.RetryPolicy{"flaky": {Attempts: 5, InitialBackoffMS: 100, Multiplier: 2}}, p.Hello.Retry)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	for i, want := range []int64{1, 2, 3} {
		v, err := c.Call(ctx, "tally", []any{"apples"})
		require.NoError(t, err, i)
		assert.Equal(t, want, v)
	}
	v, err := c.Call(ctx, "tally", nil, client.WithKwargs(map[string]any{"key": "pears"}))
	require.NoError(t, err)
	assert.Equal(t, int64(1), v, "a count per key")

	// flaky fails twice, and its policy retries it: three attempts.
	resp, err := c.Run(ctx, &schema.Request{Trace: true, Cmds: []schema.Command{{Name: "f", Fun: "flaky", Args: []any{"k", 2}}}})
	require.NoError(t, err)
	assert.Equal(t, int64(3), resp.Results["f"])
	require.Len(t, resp.Trace, 3)
	assert.Equal(t, string(schema.CodeFunctionError), resp.Trace[0].Code)
	assert.GreaterOrEqual(t, resp.Trace[1].StartUS-resp.Trace[0].StartUS, int64(100_000))
	assert.GreaterOrEqual(t, resp.Trace[2].StartUS-resp.Trace[1].StartUS, int64(200_000))
	// Its count goes on: the key has failed enough.
	resp, err = c.Run(ctx, &schema.Request{Cmds: []schema.Command{{Name: "f", Fun: "flaky", Args: []any{"k", 2}}}})
	require.NoError(t, err)
	assert.Equal(t, int64(4), resp.Results["f"])

	// More failures than attempts: FUNCTION_ERROR after 5 attempts
	// (100+200+400+800 ms of backoff).
	start := time.Now()
	_, err = c.Run(ctx, &schema.Request{Cmds: []schema.Command{{Name: "f", Fun: "flaky", Args: []any{"never", 100}}}})
	var se *schema.Error
	require.ErrorAs(t, err, &se)
	assert.Equal(t, schema.CodeFunctionError, se.Code)
	assert.Contains(t, se.Message, "flaky: call 5 of 100 that fail")
	assert.Equal(t, map[string]any{"attempts": int64(5)}, se.Details)
	assert.GreaterOrEqual(t, time.Since(start), 1500*time.Millisecond)

	for _, tc := range []struct {
		fun  string
		args []any
		msg  string
	}{
		{"tally", []any{strings.Repeat("k", 257)}, "tally: key is longer than 256 bytes"},
		{"tally", []any{5}, "tally"},
		{"flaky", []any{"k", -1}, "flaky: failures must be 0 to 1000000, got -1"},
		{"flaky", []any{"k"}, "flaky"},
	} {
		_, err := c.Call(ctx, tc.fun, tc.args)
		require.ErrorAs(t, err, &se, "%s%v", tc.fun, tc.args)
		assert.Equal(t, schema.CodeInvalidArgument, se.Code, "%s%v", tc.fun, tc.args)
		assert.Contains(t, se.Message, tc.msg)
	}
}
