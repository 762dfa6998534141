package node_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mpreg/mpreg/bus"
	"github.com/mpreg/mpreg/codec"
	"github.com/mpreg/mpreg/internal/testcluster"
	"github.com/mpreg/mpreg/node"
)

const statusSubject = "mpreg.default.status"

// counter counts the calls of a function by key, as the demo's tally does.
type counter struct {
	mu sync.Mutex
	n  map[string]int64
}

func (c *counter) add(key string) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int64{}
	}
	c.n[key]++
	return c.n[key]
}

func (c *counter) get(key string) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[key]
}

// durableNode starts a node on a server with JetStream (a fresh one when
// url is ""), offering count(key), and returns the server's URL.
func durableNode(t *testing.T, url, id string, calls *counter) (*node.Node, string) {
	t.Helper()
	if url == "" {
		url = testcluster.Server(t, testcluster.WithJetStream(t.TempDir())).ClientURL()
	}
	n := testcluster.Node(t, url, testcluster.NodeConfig(t, id), func(n *node.Node) {
		require.NoError(t, n.Register("count", calls.add, node.WithParams("key")))
	})
	select {
	case <-n.JetStreamKnown():
	case <-time.After(bound):
		t.Fatal("JetStream probe did not end")
	}
	require.Equal(t, node.JetStreamAvailable, n.JetStream())
	return n, url
}

// statusJSON asks the status subject about id.
func statusJSON(t *testing.T, nc *nats.Conn, body string) map[string]any {
	t.Helper()
	return decodeAs(t, request(t, nc, statusSubject, []byte(body), jsonHeader()), codec.JSONType)
}

// A durable request runs once per id: sent again, it answers the same
// outcome without running; with other commands under the same id it is
// refused with details.id.
func TestDurableRunsOncePerID(t *testing.T) {
	calls := &counter{}
	_, url := durableNode(t, "", "n1", calls)
	nc := testcluster.Conn(t, url)
	const req = `{"id": "once-1", "durable": true, "cmds": [{"name": "c", "fun": "count", "args": ["k1"]}]}`
	for range 3 {
		resp := rpcJSON(t, nc, req)
		require.Nil(t, resp["error"], "%v", resp)
		assert.Equal(t, map[string]any{"c": int64(1)}, resp["results"])
	}
	assert.Equal(t, int64(1), calls.get("k1"), "the function ran once")

	resp := rpcJSON(t, nc, `{"id": "once-1", "durable": true, "cmds": [{"name": "c", "fun": "count", "args": ["other"]}]}`)
	e := wireError(t, resp)
	assert.Equal(t, "INVALID_REQUEST", e["code"])
	assert.Equal(t, "once-1", details(t, e)["id"])
	assert.Zero(t, calls.get("other"))

	st := statusJSON(t, nc, `{"id": "once-1"}`)
	assert.Equal(t, "done", st["status"])
	assert.Equal(t, map[string]any{"c": int64(1)}, st["result"])
	assert.Equal(t, int64(1), st["steps"])
	assert.Equal(t, int64(1), st["steps_done"])
	assert.Equal(t, "n1", st["planner"])
}

// Concurrent submissions of one id run it once, counted in the function.
func TestDurableConcurrentSubmits(t *testing.T) {
	calls := &counter{}
	_, url := durableNode(t, "", "n1", calls)
	_, _ = durableNode(t, url, "n2", calls)
	nc := testcluster.Conn(t, url)
	const req = `{"id": "race-1", "durable": true, "submit": true, "cmds": [{"name": "c", "fun": "count", "args": ["race"]}]}`
	var wg sync.WaitGroup
	answers := make([]map[string]any, 8)
	for i := range answers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m, err := nc.RequestMsg(&nats.Msg{Subject: rpcSubject, Data: []byte(req), Header: jsonHeader()}, bound)
			if err != nil {
				return
			}
			v, err := codec.JSON.Decode(m.Data)
			if err == nil {
				answers[i], _ = v.(map[string]any)
			}
		}()
	}
	wg.Wait()
	for i, a := range answers {
		require.NotNil(t, a, "submission %d unanswered", i)
		assert.Equal(t, "race-1", a["id"])
		assert.Contains(t, []any{"accepted", "running", "done"}, a["status"], "%v", a)
		assert.Nil(t, a["error"])
	}
	st := statusJSON(t, nc, `{"id": "race-1", "wait_ms": 5000}`)
	require.Equal(t, "done", st["status"], "%v", st)
	assert.Equal(t, map[string]any{"c": int64(1)}, st["result"])
	assert.Equal(t, int64(1), calls.get("race"), "eight submissions, one run")
}

// A submission answers "accepted" at once; status says unknown for an id
// nobody sent, and a typed error for a query that does not read.
func TestDurableSubmitAndStatus(t *testing.T) {
	calls := &counter{}
	_, url := durableNode(t, "", "n1", calls)
	nc := testcluster.Conn(t, url)
	a := rpcJSON(t, nc, `{"id": "sub-1", "durable": true, "submit": true, "cmds": [{"name": "c", "fun": "count", "args": ["s"]}]}`)
	assert.Equal(t, "sub-1", a["id"])
	assert.Contains(t, []any{"accepted", "running", "done"}, a["status"])
	st := statusJSON(t, nc, `{"id": "sub-1", "wait_ms": 5000}`)
	assert.Equal(t, "done", st["status"], "%v", st)
	assert.Equal(t, map[string]any{"c": int64(1)}, st["result"])

	st = statusJSON(t, nc, `{"id": "nobody-sent-this"}`)
	assert.Equal(t, "unknown", st["status"])
	assert.Nil(t, st["error"])

	for _, bad := range []string{`{}`, `{"id": 5}`, `[1]`, `{"id": "x", "wait_ms": -1}`, `{"id": "x", "wait_ms": 99999999}`, `not json`} {
		st = statusJSON(t, nc, bad)
		assert.Equal(t, "unknown", st["status"], bad)
		assert.Equal(t, "INVALID_REQUEST", wireError(t, st)["code"], bad)
	}
	// submit without durable is refused as it is read.
	resp := rpcJSON(t, nc, `{"id": "sub-2", "submit": true, "cmds": [{"name": "c", "fun": "count", "args": ["s"]}]}`)
	assert.Equal(t, "INVALID_REQUEST", wireError(t, resp)["code"])
	// A submission that does not plan: a Status with the error.
	a = rpcJSON(t, nc, `{"id": "sub-3", "durable": true, "submit": true, "cmds": [{"name": "c", "fun": "count", "args": ["c"]}]}`)
	assert.Equal(t, "unknown", a["status"])
	assert.Equal(t, "INVALID_REQUEST", wireError(t, a)["code"])
	assert.Equal(t, int64(1), calls.get("s"))
}

// Without JetStream a durable request is refused with STORE_UNAVAILABLE,
// whose message says to enable JetStream, within 2 s; so are a submission
// and a status query. The node keeps serving.
func TestDurableWithoutJetStream(t *testing.T) {
	url := testcluster.Server(t).ClientURL()
	calls := &counter{}
	testcluster.Node(t, url, testcluster.NodeConfig(t, "n1"), func(n *node.Node) {
		require.NoError(t, n.Register("count", calls.add, node.WithParams("key")))
	})
	nc := testcluster.Conn(t, url)
	start := time.Now()
	resp := rpcJSON(t, nc, `{"id": "nojs", "durable": true, "cmds": [{"name": "c", "fun": "count", "args": ["k"]}]}`)
	assert.Less(t, time.Since(start), 2*time.Second)
	e := wireError(t, resp)
	assert.Equal(t, "STORE_UNAVAILABLE", e["code"])
	assert.Contains(t, e["message"], "enable JetStream")
	a := rpcJSON(t, nc, `{"id": "nojs", "durable": true, "submit": true, "cmds": [{"name": "c", "fun": "count", "args": ["k"]}]}`)
	assert.Equal(t, "unknown", a["status"])
	assert.Equal(t, "STORE_UNAVAILABLE", wireError(t, a)["code"])
	st := statusJSON(t, nc, `{"id": "nojs"}`)
	assert.Equal(t, "STORE_UNAVAILABLE", wireError(t, st)["code"])
	assert.Zero(t, calls.get("k"))
	resp = rpcJSON(t, nc, `{"cmds": [{"name": "c", "fun": "count", "args": ["k"]}]}`)
	assert.Nil(t, resp["error"])
}

// A cancel of a durable request is recorded: the request ends cancelled,
// and its status says so.
func TestDurableCancel(t *testing.T) {
	url := testcluster.Server(t, testcluster.WithJetStream(t.TempDir())).ClientURL()
	b := newBlocker()
	n := testcluster.Node(t, url, testcluster.NodeConfig(t, "n1"), func(n *node.Node) {
		require.NoError(t, n.Register("block", b.Fn))
	})
	<-n.JetStreamKnown()
	nc := testcluster.Conn(t, url)
	a := rpcJSON(t, nc, `{"id": "cx-1", "durable": true, "submit": true, "cmds": [{"name": "b", "fun": "block", "args": ["x"]}]}`)
	require.Nil(t, a["error"], "%v", a)
	testcluster.WaitFor(t, "the step to run", func() error {
		if n.Stats().Inflight == 0 {
			return fmt.Errorf("nothing in flight")
		}
		return nil
	})
	require.NoError(t, nc.Publish("mpreg.default.cancel", []byte(`{"id": "cx-1"}`)))
	st := statusJSON(t, nc, `{"id": "cx-1", "wait_ms": 5000}`)
	assert.Equal(t, "cancelled", st["status"], "%v", st)
	assert.Equal(t, "CANCELLED", wireError(t, st)["code"])
}

// A planner that dies mid-request (its connection cut, no goodbye, its
// lease left to lapse) loses nothing: another node takes the request over
// within the lease's TTL and 2 s, runs only the steps without a recorded
// result, and answers the caller, who still waits.
func TestDurableTakeover(t *testing.T) {
	dir := t.TempDir()
	srv := testcluster.Server(t, testcluster.WithJetStream(dir))
	url := srv.ClientURL()
	calls := &counter{}
	var gateCalls atomic.Int64
	release := make(chan struct{})
	worker := func(n *node.Node) {
		require.NoError(t, n.Register("count", calls.add, node.WithParams("key")))
		require.NoError(t, n.Register("gate", func(ctx context.Context, x any) (any, error) {
			if gateCalls.Add(1) == 1 {
				select { // the first run outlives its planner
				case <-release:
				case <-ctx.Done():
				}
			}
			return []any{"gated", x}, nil
		}, node.WithParams("x")))
	}
	// n1 plans; n2 runs the steps and is the one left to take over.
	pnc := testcluster.Conn(t, url)
	planner := testcluster.StartNode(t, pnc, testcluster.NodeConfig(t, "n1"), nil)
	<-planner.JetStreamKnown()
	w := testcluster.Node(t, url, testcluster.NodeConfig(t, "n2"), worker)
	<-w.JetStreamKnown()
	testcluster.WaitForRoute(t, planner.Table(), "gate", nil, "n2")

	nc := testcluster.Conn(t, url)
	reply := make(chan *nats.Msg, 1)
	go func() {
		m, err := nc.RequestMsg(&nats.Msg{Subject: "mpreg.default.node.n1.rpc", Header: jsonHeader(), Data: []byte(`{"id": "take-1", "durable": true, "timeout_ms": 30000,
			"cmds": [{"name": "a", "fun": "count", "args": ["take"]}, {"name": "b", "fun": "gate", "args": ["a"]}]}`)}, 3*bound)
		if err == nil {
			reply <- m
		}
	}()
	testcluster.WaitFor(t, "step b to run", func() error {
		if gateCalls.Load() == 0 {
			return fmt.Errorf("gate not called")
		}
		return nil
	})
	st := statusJSON(t, nc, `{"id": "take-1"}`)
	assert.Equal(t, "running", st["status"], "%v", st)
	assert.Equal(t, "n1", st["planner"])
	assert.Equal(t, int64(1), st["steps_done"])

	killed := time.Now()
	pnc.Close() // the planner's process is gone: no goodbye, no lease release
	planner.Close()
	close(release)

	var m *nats.Msg
	select {
	case m = <-reply:
	case <-time.After(3 * bound):
		t.Fatal("the caller got no answer after its planner died")
	}
	took := time.Since(killed)
	resp := decodeAs(t, m, codec.JSONType)
	require.Nil(t, resp["error"], "%v", resp)
	assert.Equal(t, map[string]any{"b": []any{"gated", int64(1)}}, resp["results"])
	assert.Equal(t, int64(1), calls.get("take"), "the recorded step did not run again")
	assert.Equal(t, int64(2), gateCalls.Load(), "the step without a recorded result ran again")
	assert.Less(t, took, bus.DefaultObjectTTL) // sanity; the bound below is the contract
	assert.Less(t, took, 3*time.Second+2*time.Second, "taken over within the lease TTL and 2 s")
	t.Logf("answered %v after the planner died", took.Round(time.Millisecond))

	st = statusJSON(t, nc, `{"id": "take-1"}`)
	assert.Equal(t, "done", st["status"])
	assert.Equal(t, "n2", st["planner"])
	assert.Equal(t, int64(2), st["steps_done"])
}

// A step's function reads its idempotency key, "<request id>/<step name>",
// from its context, whether the step runs on its planner or elsewhere; a
// context that is not a step's has none.
func TestStepKey(t *testing.T) {
	url := testcluster.Server(t).ClientURL()
	key := func(ctx context.Context) (string, error) {
		k, ok := node.StepKey(ctx)
		if !ok {
			return "", fmt.Errorf("no step key")
		}
		return k, nil
	}
	testcluster.Node(t, url, testcluster.NodeConfig(t, "n1"), func(n *node.Node) {
		require.NoError(t, n.Register("key1", key))
	})
	n2 := testcluster.Node(t, url, testcluster.NodeConfig(t, "n2"), func(n *node.Node) {
		require.NoError(t, n.Register("key2", key))
	})
	testcluster.WaitForRoute(t, n2.Table(), "key1", nil, "n1")
	nc := testcluster.Conn(t, url)
	m := request(t, nc, "mpreg.default.node.n2.rpc", []byte(`{"id": "req-7", "cmds": [
		{"name": "here", "fun": "key2"}, {"name": "there", "fun": "key1"}]}`), jsonHeader())
	resp := decodeAs(t, m, codec.JSONType)
	require.Nil(t, resp["error"], "%v", resp)
	assert.Equal(t, map[string]any{"here": "req-7/here", "there": "req-7/there"}, resp["results"])
	_, ok := node.StepKey(context.Background())
	assert.False(t, ok)
}
