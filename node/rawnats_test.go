package node_test

// Conformance from the outside: a program that knows only docs/PROTOCOL.md, a
// NATS client and a JSON library calls the cluster (§4, §5) and serves a
// function as a node of it (§6, §7). Nothing here uses the project's client,
// codec or schema packages: only nats.go and encoding/json.

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/mpreg/mpreg/client"
	"github.com/mpreg/mpreg/internal/testcluster"
	"github.com/mpreg/mpreg/internal/testwait"
	"github.com/mpreg/mpreg/node"
	"github.com/mpreg/mpreg/schema"
)

// decodeJSON decodes a JSON body keeping numbers exact.
func decodeJSON(t testing.TB, data []byte) map[string]any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var m map[string]any
	require.NoError(t, dec.Decode(&m), "body %q", data)
	return m
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return b
}

func TestRawNATSCaller(t *testing.T) {
	srv := testcluster.Server(t)
	testcluster.Node(t, srv.ClientURL(), testcluster.NodeConfig(t, "go-1"), nil)
	g2 := testcluster.Node(t, srv.ClientURL(), testcluster.NodeConfig(t, "go-2", "dataset-a"), nil)
	testcluster.WaitForRoute(t, g2.Table(), "echo", nil, "go-1", "go-2")

	nc, err := nats.Connect(srv.ClientURL())
	require.NoError(t, err)
	defer nc.Close()

	// Exactly what `nats req mpreg.default.rpc '{...}'` sends: no headers.
	m, err := nc.Request("mpreg.default.rpc", []byte(readme), bound)
	require.NoError(t, err)
	// A JSON reply to a request that named no codec has no header (§3).
	require.Empty(t, m.Header.Get("Content-Type"))
	resp := decodeJSON(t, m.Data)
	require.Equal(t, "readme-1", resp["id"])
	_, hasErr := resp["error"]
	require.False(t, hasErr, "%s", m.Data)
	require.Equal(t, map[string]any{"|second": "hi there!", "|third": []any{"hi there!", "AND ME TOO"}}, resp["results"])

	// §5 failure shape: error object with code, message, step and
	// details, plus partial results.
	m, err = nc.Request("mpreg.default.rpc", []byte(`{"id": "r2", "cmds": [
		{"name": "|first", "fun": "echo", "args": ["hi there!"]},
		{"name": "|third", "fun": "echo", "args": ["|first"], "locs": ["gpu"]}]}`), bound)
	require.NoError(t, err)
	resp = decodeJSON(t, m.Data)
	require.Equal(t, "r2", resp["id"])
	e, ok := resp["error"].(map[string]any)
	require.True(t, ok, "%s", m.Data)
	require.Equal(t, "NO_ROUTE", e["code"])
	require.Equal(t, "|third", e["step"])
	require.NotEmpty(t, e["message"])
	require.Equal(t, map[string]any{"fun": "echo", "locs": []any{"gpu"}}, e["details"])
	require.Contains(t, []any{map[string]any{}, map[string]any{"|first": "hi there!"}}, resp["results"],
		"results holds only what finished before the failure")
}

// foreignNode is a node written by hand from docs/PROTOCOL.md: it offers shout
// (and, after an update, whisper) with loc lang-x and speaks only JSON.
type foreignNode struct {
	t           *testing.T
	nc          *nats.Conn
	incarnation int64
	mu          sync.Mutex
	version     int64
	gone        bool // it said goodbye: it answers sync and info with it
	funs        map[string][]string
	execs       chan map[string]any
	execHeaders chan nats.Header
	stop        chan struct{}
	wg          sync.WaitGroup
}

func (f *foreignNode) hello() []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.gone {
		return f.goodbye()
	}
	return mustJSON(f.t, map[string]any{
		"cluster": "default", "node": "foreign-1", "incarnation": f.incarnation, "version": f.version,
		"funs": f.funs, "codecs": []string{"application/json"}, "advertised_urls": []string{},
		"meta": map[string]string{"name": "hand-written", "lang": "x"}, "proto": 1,
	})
}

func (f *foreignNode) goodbye() []byte {
	return mustJSON(f.t, map[string]any{"cluster": "default", "node": "foreign-1", "incarnation": f.incarnation})
}

func (f *foreignNode) reply(m *nats.Msg, body []byte) {
	out := nats.NewMsg(m.Reply)
	out.Header.Set("Content-Type", "application/json")
	out.Data = body
	if err := m.RespondMsg(out); err != nil {
		f.t.Errorf("respond: %v", err)
	}
}

func (f *foreignNode) onExec(m *nats.Msg) {
	f.execHeaders <- m.Header
	var req map[string]any
	dec := json.NewDecoder(bytes.NewReader(m.Data))
	dec.UseNumber()
	if err := dec.Decode(&req); err != nil {
		f.reply(m, []byte(`{"error": {"code": "INVALID_REQUEST", "message": "bad json"}}`))
		return
	}
	f.execs <- req
	args, _ := req["args"].([]any)
	switch req["fun"] {
	case "shout":
		var s string
		ok := len(args) == 1
		if ok {
			s, ok = args[0].(string)
		}
		if !ok {
			f.reply(m, []byte(`{"error": {"code": "INVALID_ARGUMENT", "message": "shout takes one string", "details": {"param": "text"}}}`))
			return
		}
		f.reply(m, mustJSON(f.t, map[string]any{"result": strings.ToUpper(s) + "!"}))
	case "whisper":
		f.reply(m, []byte(`{"result": null}`))
	default:
		f.reply(m, mustJSON(f.t, map[string]any{"error": map[string]any{"code": "NO_ROUTE", "message": "not here"}}))
	}
}

// heartbeats publishes a heartbeat every 100 ms until stop is closed.
func (f *foreignNode) heartbeats() {
	defer f.wg.Done()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for seq := 1; ; seq++ {
		f.mu.Lock()
		hb := mustJSON(f.t, map[string]any{"cluster": "default", "node": "foreign-1", "incarnation": f.incarnation,
			"version": f.version, "seq": seq, "load": map[string]any{"inflight": 0, "limit": 8}})
		f.mu.Unlock()
		_ = f.nc.Publish("mpreg.default.gossip.heartbeat", hb)
		select {
		case <-f.stop:
			return
		case <-tick.C:
		}
	}
}

func TestRawNATSForeignNode(t *testing.T) {
	srv := testcluster.Server(t)
	url := srv.ClientURL()
	exclaimed := make(chan string, 8)
	goNodes := []*node.Node{
		testcluster.Node(t, url, testcluster.NodeConfig(t, "go-1"), func(n *node.Node) {
			require.NoError(t, n.Register("exclaim", func(s string) string { exclaimed <- s; return s + "?" }, node.WithParams("s")))
		}),
		testcluster.Node(t, url, testcluster.NodeConfig(t, "go-2"), nil),
	}

	nc, err := nats.Connect(url)
	require.NoError(t, err)
	defer nc.Close()
	f := &foreignNode{t: t, nc: nc, incarnation: time.Now().UnixMilli(), version: 1,
		funs:  map[string][]string{"shout": {"lang-x"}},
		execs: make(chan map[string]any, 8), execHeaders: make(chan nats.Header, 8), stop: make(chan struct{})}
	for subject, h := range map[string]nats.MsgHandler{
		"mpreg.default.node.foreign-1.exec": f.onExec,
		"mpreg.default.node.foreign-1.info": func(m *nats.Msg) { f.reply(m, f.hello()) },
		"mpreg.default.gossip.sync":         func(m *nats.Msg) { f.reply(m, f.hello()) },
	} {
		sub, err := nc.Subscribe(subject, h)
		require.NoError(t, err)
		defer func() { _ = sub.Unsubscribe() }()
	}
	require.NoError(t, nc.Flush())
	require.NoError(t, nc.Publish("mpreg.default.gossip.hello", f.hello()))
	f.wg.Add(1)
	go f.heartbeats()
	stopped := false
	stopHeartbeats := func() {
		if !stopped {
			stopped = true
			close(f.stop)
			f.wg.Wait()
		}
	}
	defer stopHeartbeats()

	for _, n := range goNodes {
		testcluster.WaitForRoute(t, n.Table(), "shout", []string{"lang-x"}, "foreign-1")
	}

	// A request that runs shout on the foreign node and feeds its result
	// into a Go function, by positional reference and by $ref in kwargs.
	before := time.Now()
	m, err := nc.Request("mpreg.default.rpc", []byte(`{"id": "mixed-1", "cmds": [
		{"name": "loud", "fun": "shout", "args": ["hello"], "locs": ["lang-x"]},
		{"name": "out", "fun": "exclaim", "kwargs": {"s": {"$ref": "loud"}}}],
		"timeout_ms": 5000}`), bound)
	require.NoError(t, err)
	resp := decodeJSON(t, m.Data)
	require.Nil(t, resp["error"], "%s", m.Data)
	require.Equal(t, map[string]any{"out": "HELLO!?"}, resp["results"])
	require.Equal(t, "HELLO!", testwait.Recv(t, exclaimed, "exclaim to run"))

	hdr := testwait.Recv(t, f.execHeaders, "the exec headers")
	require.Equal(t, "application/json", hdr.Get("Content-Type"), "exec sent in the only codec the node lists")
	exec := testwait.Recv(t, f.execs, "the exec request")
	require.Equal(t, "default", exec["cluster"])
	require.Equal(t, "mixed-1/loud", exec["id"], "exec id is <rpc id>/<step name>")
	require.Equal(t, "shout", exec["fun"])
	require.Equal(t, []any{"hello"}, exec["args"])
	require.Equal(t, map[string]any{}, exec["kwargs"])
	dl, ok := exec["deadline_ms"].(json.Number)
	require.True(t, ok, "deadline_ms is a number: %#v", exec["deadline_ms"])
	dlms, err := dl.Int64()
	require.NoError(t, err, "deadline_ms is an integer")
	require.Greater(t, dlms, before.UnixMilli(), "deadline in the future")
	require.LessOrEqual(t, dlms, time.Now().Add(6*time.Second).UnixMilli(), "deadline within the request's budget")

	// A heartbeat with a newer version makes peers fetch the new hello from
	// node.<id>.info.
	f.mu.Lock()
	f.version = 2
	f.funs = map[string][]string{"shout": {"lang-x"}, "whisper": {"lang-x"}}
	f.mu.Unlock()
	for _, n := range goNodes {
		testcluster.WaitForRoute(t, n.Table(), "whisper", nil, "foreign-1")
	}
	m, err = nc.Request("mpreg.default.rpc", []byte(`{"cmds": [{"name": "w", "fun": "whisper", "locs": ["lang-x"]}]}`), bound)
	require.NoError(t, err)
	resp = decodeJSON(t, m.Data)
	require.Nil(t, resp["error"], "%s", m.Data)
	results, _ := resp["results"].(map[string]any)
	v, ok := results["w"]
	require.True(t, ok, "a null result is present: %s", m.Data)
	require.Nil(t, v)
	testwait.Recv(t, f.execs, "the whisper exec")

	// An error object from the foreign node reaches the caller with its
	// code, message and details, naming the step.
	m, err = nc.Request("mpreg.default.rpc", []byte(`{"cmds": [{"name": "bad", "fun": "shout", "args": [1], "locs": ["lang-x"]}]}`), bound)
	require.NoError(t, err)
	e, ok := decodeJSON(t, m.Data)["error"].(map[string]any)
	require.True(t, ok, "%s", m.Data)
	require.Equal(t, "INVALID_ARGUMENT", e["code"])
	require.Equal(t, "shout takes one string", e["message"])
	require.Equal(t, "bad", e["step"])
	require.Equal(t, "foreign-1", e["node"])
	require.Equal(t, map[string]any{"param": "text"}, e["details"])
	testwait.Recv(t, f.execs, "the failing exec")

	// goodbye: the Go nodes stop routing to it at once (they check with
	// the node, which from then on answers info and sync with its goodbye).
	stopHeartbeats()
	f.mu.Lock()
	f.gone = true
	f.mu.Unlock()
	require.NoError(t, nc.Publish("mpreg.default.gossip.goodbye", f.goodbye()))
	for _, n := range goNodes {
		testcluster.WaitForGone(t, n.Table(), "foreign-1")
	}
	m, err = nc.Request("mpreg.default.rpc", []byte(`{"cmds": [{"name": "s", "fun": "shout", "args": ["x"]}]}`), bound)
	require.NoError(t, err)
	e, _ = decodeJSON(t, m.Data)["error"].(map[string]any)
	require.Equal(t, "NO_ROUTE", e["code"], string(m.Data))
}

// TestRawContinueOnError: with "on_error": "continue" over plain NATS, a
// failing branch leaves its sibling's result and its descendant CANCELLED.
func TestRawContinueOnError(t *testing.T) {
	s := testcluster.Server(t)
	testcluster.Node(t, s.ClientURL(), testcluster.NodeConfig(t, "n1"), registerStd)
	nc := testcluster.Conn(t, s.ClientURL())
	resp := rpcJSON(t, nc, `{"id": "c1", "on_error": "continue", "cmds": [
		{"name": "bad", "fun": "fail", "args": ["no disk"]},
		{"name": "after", "fun": "add", "args": ["bad", 1]},
		{"name": "good", "fun": "add", "args": [2, 3]}]}`)
	require.NotContains(t, resp, "error", "a request that ran something has no top-level error")
	require.Equal(t, map[string]any{"good": int64(5)}, resp["results"])
	errs, ok := resp["errors"].(map[string]any)
	require.True(t, ok, "%v", resp)
	require.Len(t, errs, 2)
	bad := errs["bad"].(map[string]any)
	require.Equal(t, "FUNCTION_ERROR", bad["code"])
	require.Equal(t, "no disk", bad["message"])
	after := errs["after"].(map[string]any)
	require.Equal(t, "CANCELLED", after["code"])
	require.Equal(t, map[string]any{"cause": "bad"}, after["details"])

	e := wireError(t, rpcJSON(t, nc, `{"on_error": "maybe", "cmds": [{"name": "a", "fun": "add", "args": [1, 2]}]}`))
	require.Equal(t, "INVALID_REQUEST", e["code"])

	// Through the Go client: no error, the results that finished, the
	// errors by step, typed.
	cl := testcluster.Client(t, s.ClientURL(), client.Config{NoFollow: true})
	r, err := cl.Run(context.Background(), &schema.Request{OnError: schema.OnErrorContinue, Cmds: []schema.Command{
		{Name: "bad", Fun: "fail", Args: []any{"no disk"}},
		{Name: "after", Fun: "add", Args: []any{"bad", 1}},
		{Name: "good", Fun: "add", Args: []any{2, 3}}}})
	require.NoError(t, err)
	require.EqualValues(t, 5, r.Results["good"])
	require.Equal(t, schema.CodeFunctionError, r.Errors["bad"].Code)
	require.Equal(t, schema.CodeCancelled, r.Errors["after"].Code)
	require.Equal(t, map[string]any{"cause": "bad"}, r.Errors["after"].Details)
}
