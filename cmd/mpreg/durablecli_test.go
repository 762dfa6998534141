package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mpreg/mpreg/bus"
	"github.com/mpreg/mpreg/codec"
	"github.com/mpreg/mpreg/internal/testcluster"
	"github.com/mpreg/mpreg/mesh"
	"github.com/mpreg/mpreg/schema"
)

// The durable commands' flags, read as kong reads them.
func TestDurableFlags(t *testing.T) {
	t.Parallel()
	parse := func(args ...string) *cli {
		t.Helper()
		var c cli
		p, err := newParser(&c, io.Discard, io.Discard)
		require.NoError(t, err)
		_, err = p.Parse(args)
		require.NoError(t, err, "%v", args)
		return &c
	}
	c := parse("submit", "req.json", "--id", "job-1", "--result-ttl", "1h", "--timeout", "5s", "--codec", "json")
	assert.Equal(t, submitCmd{File: "req.json", ID: "job-1", ResultTTL: time.Hour, Timeout: 5 * time.Second, Codec: "json",
		clientFlags: c.Submit.clientFlags}, c.Submit)
	c = parse("submit", "-")
	assert.Equal(t, "-", c.Submit.File)
	assert.Equal(t, 30*time.Second, c.Submit.Timeout)
	c = parse("status", "job-1", "--json")
	assert.Equal(t, "job-1", c.Status.ID)
	assert.True(t, c.Status.JSON)
	c = parse("get", "job-1", "--wait", "--timeout", "2m", "-o", "out.bin")
	assert.Equal(t, getCmd{ID: "job-1", Wait: true, Timeout: 2 * time.Minute, Out: "out.bin", clientFlags: c.Get.clientFlags}, c.Get)
	c = parse("get", "job-1")
	assert.False(t, c.Get.Wait)
	c = parse("run", "-", "--durable")
	assert.True(t, c.Run.Durable)

	for _, args := range [][]string{{"get"}, {"status"}, {"submit"}, {"get", "x", "--wait=maybe"}} {
		r := mpreg(t, opts{}, args...)
		assert.Equal(t, exitUsage, r.code, "%v", args)
	}
}

// fakeNodes answers, from a raw connection, the rpc and status subjects
// as nodes that run durable requests would: the tests of the commands'
// wiring and output.
type fakeNodes struct {
	url string
	mu  sync.Mutex
	got []*schema.Request
}

func newFakeNodes(t *testing.T) *fakeNodes {
	t.Helper()
	srv := testcluster.Server(t)
	f := &fakeNodes{url: srv.ClientURL()}
	nc := testcluster.Conn(t, f.url)
	subj := bus.NewSubjects("", bus.DefaultCluster)
	answer := func(subject string, fn func(m *nats.Msg) any) {
		sub, err := nc.Subscribe(subject, func(m *nats.Msg) {
			if err := mesh.Respond(nc, m, codec.JSON, fn(m), nil); err != nil {
				t.Errorf("respond: %v", err)
			}
		})
		require.NoError(t, err)
		t.Cleanup(func() { _ = sub.Unsubscribe() })
	}
	answer(subj.RPC(), f.submit)
	answer(subj.Status(), f.status)
	require.NoError(t, nc.Flush())
	return f
}

func (f *fakeNodes) submit(m *nats.Msg) any {
	r, _, _, err := mesh.ReadSized(m, codec.MaxDecoded, false, schema.ReadRequest)
	if err != nil {
		return schema.Status{Status: schema.StatusUnknown, Error: schema.AsError(err)}
	}
	f.mu.Lock()
	f.got = append(f.got, r)
	f.mu.Unlock()
	switch {
	case !r.Durable || !r.Submit:
		return schema.Status{ID: r.ID, Status: schema.StatusUnknown, Error: schema.Errorf(schema.CodeInvalidRequest, "not a submission")}
	case r.Cmds[0].Fun == "nostore":
		return schema.Status{ID: r.ID, Status: schema.StatusUnknown,
			Error: schema.Errorf(schema.CodeStoreUnavailable, "durable requests need JetStream: enable it")}
	case r.ID == "old":
		st := statuses["done"]
		st.ID = r.ID
		return st
	}
	return schema.Status{ID: r.ID, Status: schema.StatusAccepted, Steps: int64(len(r.Cmds))}
}

func (f *fakeNodes) requests() []*schema.Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*schema.Request(nil), f.got...)
}

var statuses = map[string]schema.Status{
	"running": {ID: "running", Status: schema.StatusRunning, Planner: "n2", StepsDone: 3, Steps: 10},
	"done": {ID: "done", Status: schema.StatusDone, Planner: "n1", StepsDone: 2, Steps: 2,
		Result: map[string]any{"b": "HI"}},
	"failed": {ID: "failed", Status: schema.StatusFailed, Planner: "n1", StepsDone: 1, Steps: 2,
		Result: map[string]any{"a": "hi"}, Error: &schema.Error{Code: schema.CodeFunctionError, Message: "boom", Step: "b", Node: "n1"}},
	"continued": {ID: "continued", Status: schema.StatusDone, StepsDone: 2, Steps: 3,
		Result: map[string]any{"a": "hi"}, Errors: map[string]*schema.Error{
			"z": {Code: schema.CodeCancelled, Message: "skipped"},
			"b": {Code: schema.CodeFunctionError, Message: "boom", Step: "b"}}},
}

func (f *fakeNodes) status(m *nats.Msg) any {
	q, _, _, err := mesh.ReadSized(m, codec.MaxDecoded, false, schema.ReadStatusRequest)
	if err != nil {
		return schema.Status{Status: schema.StatusUnknown, Error: schema.AsError(err)}
	}
	if st, ok := statuses[q.ID]; ok {
		return st
	}
	return schema.Status{ID: q.ID, Status: schema.StatusUnknown}
}

// mpreg submit reads the request from a file or stdin, sends it durable
// and to submit, and prints the id alone; a refusal is exit 1.
func TestSubmitCommand(t *testing.T) {
	t.Parallel()
	f := newFakeNodes(t)
	file := filepath.Join(t.TempDir(), "req.json")
	require.NoError(t, os.WriteFile(file, []byte(`{"id":"job-1","cmds":[{"name":"a","fun":"upper","args":["hi"]}]}`), 0o600))

	r := mpreg(t, opts{}, "submit", file, "--servers", f.url, "--result-ttl", "1h")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "job-1\n", r.stdout)
	got := f.requests()
	require.Len(t, got, 1)
	assert.True(t, got[0].Durable)
	assert.True(t, got[0].Submit)
	assert.Equal(t, int64(3_600_000), got[0].ResultTTLMS)
	assert.Equal(t, []schema.Command{{Name: "a", Fun: "upper", Args: []any{"hi"}}}, got[0].Cmds)

	r = mpreg(t, opts{stdin: `{"cmds":[{"name":"a","fun":"upper","args":["x"]}]}`}, "submit", "-", "--servers", f.url)
	require.Equal(t, 0, r.code, r.stderr)
	id := strings.TrimSuffix(r.stdout, "\n")
	require.NotEmpty(t, id)
	assert.NotContains(t, id, "\n")
	got = f.requests()
	assert.Equal(t, id, got[len(got)-1].ID, "the id printed is the one sent")

	r = mpreg(t, opts{}, "submit", file, "--servers", f.url, "--id", "old")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "old\n", r.stdout)
	assert.Equal(t, "mpreg: request \"old\" was submitted before: done  planner=n1  steps 2/2\n", r.stderr)

	r = mpreg(t, opts{stdin: `{"cmds":[{"name":"a","fun":"nostore"}]}`}, "submit", "-", "--servers", f.url)
	assert.Equal(t, exitError, r.code)
	assert.Empty(t, r.stdout)
	assert.Equal(t, "STORE_UNAVAILABLE: durable requests need JetStream: enable it\n", r.stderr)

	r = mpreg(t, opts{stdin: `{"cmds": [`}, "submit", "-", "--servers", f.url)
	assert.Equal(t, exitUsage, r.code)
	assert.Contains(t, r.stderr, "not valid JSON")
	r = mpreg(t, opts{}, "submit", filepath.Join(t.TempDir(), "missing.json"), "--servers", f.url)
	assert.Equal(t, exitUsage, r.code)
	r = mpreg(t, opts{stdin: `{"cmds": "upper"}`}, "submit", "-", "--servers", f.url)
	assert.Equal(t, exitError, r.code)
	assert.Equal(t, "INVALID_REQUEST: cmds: want list, got string\n", r.stderr)
}

// mpreg status: one line, or the whole status as JSON; an unknown id
// exits 1.
func TestStatusCommand(t *testing.T) {
	t.Parallel()
	f := newFakeNodes(t)
	r := mpreg(t, opts{}, "status", "running", "--servers", f.url)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "running  planner=n2  steps 3/10\n", r.stdout)

	r = mpreg(t, opts{}, "status", "failed", "--servers", f.url)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "failed  planner=n1  steps 1/2  FUNCTION_ERROR: boom (step b on node n1)\n", r.stdout)

	r = mpreg(t, opts{}, "status", "done", "--servers", f.url, "--json")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, decode(t, `{"id":"done","status":"done","planner":"n1","steps_done":2,"steps":2,"result":{"b":"HI"}}`), decode(t, r.stdout))

	r = mpreg(t, opts{}, "status", "nope", "--servers", f.url)
	assert.Equal(t, exitError, r.code)
	assert.Equal(t, "unknown\n", r.stdout)
	assert.Contains(t, r.stderr, `no durable request "nope" of this caller`)
}

// mpreg get prints the response as mpreg run does, with its exit codes;
// a request not ended exits 1 saying so.
func TestGetCommand(t *testing.T) {
	t.Parallel()
	f := newFakeNodes(t)
	r := mpreg(t, opts{}, "get", "done", "--servers", f.url)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "{\n  \"id\": \"done\",\n  \"results\": {\n    \"b\": \"HI\"\n  }\n}\n", r.stdout)

	out := filepath.Join(t.TempDir(), "b.json")
	r = mpreg(t, opts{}, "get", "done", "--servers", f.url, "-o", out)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, decode(t, `{"id":"done","results":{}}`), decode(t, r.stdout))
	data, err := os.ReadFile(out)
	require.NoError(t, err)
	assert.Equal(t, "\"HI\"\n", string(data))

	r = mpreg(t, opts{}, "get", "failed", "--servers", f.url)
	assert.Equal(t, exitError, r.code)
	assert.Equal(t, "FUNCTION_ERROR: boom (step b on node n1)\n", r.stderr)
	got := decode(t, r.stdout).(map[string]any)
	assert.Equal(t, map[string]any{"a": "hi"}, got["results"])
	assert.Equal(t, "FUNCTION_ERROR", got["error"].(map[string]any)["code"])

	r = mpreg(t, opts{}, "get", "continued", "--servers", f.url)
	assert.Equal(t, exitError, r.code, "a step failed (on_error continue)")
	assert.Equal(t, "FUNCTION_ERROR: boom (step b)\n", r.stderr)

	r = mpreg(t, opts{}, "get", "running", "--servers", f.url)
	assert.Equal(t, exitError, r.code)
	assert.Empty(t, r.stdout)
	assert.Equal(t, "mpreg: durable request \"running\" has not ended: running on n2, 3 of 10 steps done (mpreg get --wait waits for it)\n", r.stderr)

	r = mpreg(t, opts{}, "get", "running", "--servers", f.url, "--wait", "--timeout", "500ms")
	assert.Equal(t, exitError, r.code)
	assert.Empty(t, r.stdout)
	assert.Contains(t, r.stderr, "has not ended: running on n2")
	assert.Contains(t, r.stderr, "(waited 500ms: --timeout)")

	r = mpreg(t, opts{}, "get", "nope", "--servers", f.url)
	assert.Equal(t, exitError, r.code)
	assert.Empty(t, r.stdout)
	assert.Contains(t, r.stderr, `no durable request "nope" of this caller`)
}
