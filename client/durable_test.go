package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mpreg/mpreg/bus"
	"github.com/mpreg/mpreg/client"
	"github.com/mpreg/mpreg/codec"
	"github.com/mpreg/mpreg/internal/testcluster"
	"github.com/mpreg/mpreg/mesh"
	"github.com/mpreg/mpreg/schema"
)

// These tests stand a raw NATS responder in for the nodes: what the client
// sends, and what it makes of each answer.

var subjects = bus.NewSubjects("", bus.DefaultCluster)

// rawSetup is a NATS server without nodes, a client that does not follow,
// and a raw connection to answer the client's messages.
func rawSetup(t *testing.T, cfg client.Config) (*client.Client, *nats.Conn) {
	t.Helper()
	srv := testcluster.Server(t)
	cfg.NoFollow = true
	return testcluster.Client(t, srv.ClientURL(), cfg), testcluster.Conn(t, srv.ClientURL())
}

// respond answers every message on subject with what answer returns for
// it, as JSON.
func respond(t *testing.T, nc *nats.Conn, subject string, answer func(m *nats.Msg) any) {
	t.Helper()
	respondUntil(t, nc, subject, make(chan struct{}), answer)
}

// respondUntil is respond with done closed when the test ends, before its
// connection closes; the test waits for the answers under way, and answer
// returns nil to send none.
func respondUntil(t *testing.T, nc *nats.Conn, subject string, done chan struct{}, answer func(m *nats.Msg) any) {
	t.Helper()
	var mu sync.RWMutex
	over := false
	sub, err := nc.Subscribe(subject, func(m *nats.Msg) {
		mu.RLock()
		defer mu.RUnlock()
		if over {
			return
		}
		if v := answer(m); v != nil {
			if err := mesh.Respond(nc, m, codec.JSON, v, nil); err != nil {
				t.Errorf("respond: %v", err)
			}
		}
	})
	require.NoError(t, err)
	t.Cleanup(func() {
		close(done)
		_ = sub.Unsubscribe()
		mu.Lock()
		over = true
		mu.Unlock()
	})
	require.NoError(t, nc.Flush())
}

// respondRaw answers every message on subject with data as it is.
func respondRaw(t *testing.T, nc *nats.Conn, subject string, data string) {
	t.Helper()
	sub, err := nc.Subscribe(subject, func(m *nats.Msg) { _ = m.Respond([]byte(data)) })
	require.NoError(t, err)
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	require.NoError(t, nc.Flush())
}

func readStatusQuery(t *testing.T, m *nats.Msg) *schema.StatusRequest {
	q, _, _, err := mesh.ReadSized(m, codec.MaxDecoded, false, schema.ReadStatusRequest)
	if err != nil {
		t.Errorf("status query: %v", err)
		return &schema.StatusRequest{}
	}
	return q
}

func readRequest(t *testing.T, m *nats.Msg) *schema.Request {
	r, _, _, err := mesh.ReadSized(m, codec.MaxDecoded, false, schema.ReadRequest)
	if err != nil {
		t.Errorf("request: %v", err)
		return &schema.Request{}
	}
	return r
}

func quick(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testcluster.Timeout)
	t.Cleanup(cancel)
	return ctx
}

// Status and Get with no node to answer: NO_ROUTE at once, naming the
// status subject.
func TestDurableNoResponders(t *testing.T) {
	t.Parallel()
	c, _ := rawSetup(t, client.Config{})
	for name, call := range map[string]func(ctx context.Context) error{
		"status":   func(ctx context.Context) error { _, err := c.Status(ctx, "r1"); return err },
		"get":      func(ctx context.Context) error { _, err := c.Get(ctx, "r1", false); return err },
		"get wait": func(ctx context.Context) error { _, err := c.Get(ctx, "r1", true); return err },
	} {
		start := time.Now()
		err := call(quick(t))
		require.ErrorIs(t, err, schema.ErrNoRoute, name)
		assert.Contains(t, err.Error(), "no responders on mpreg.default.status", name)
		assert.Less(t, time.Since(start), 2*time.Second, name)
	}
	_, err := c.Status(quick(t), "")
	require.ErrorIs(t, err, schema.ErrInvalidRequest)
}

// Answers that are no status of the id asked: INTERNAL, and the client
// goes on.
func TestDurableBadStatusReply(t *testing.T) {
	t.Parallel()
	for name, data := range map[string]string{
		"not a body":     "\xc1\xc1 not JSON nor MessagePack",
		"no status":      `{"id":"r1","steps":3}`,
		"bad status":     `{"id":"r1","status":"sleeping"}`,
		"bad steps":      `{"id":"r1","status":"running","steps":"many"}`,
		"another id":     `{"id":"r2","status":"running"}`,
		"bad error":      `{"id":"r1","status":"failed","error":{"code":7}}`,
		"response, fine": `{"id":"r1","results":{"a":1}}`,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c, nc := rawSetup(t, client.Config{})
			respondRaw(t, nc, subjects.Status(), data)
			_, err := c.Status(quick(t), "r1")
			require.ErrorIs(t, err, schema.ErrInternal)
			_, err = c.Get(quick(t), "r1", true)
			require.ErrorIs(t, err, schema.ErrInternal)
		})
	}
}

// What Status and Get make of each status, and what a waiting Get asks.
func TestDurableStatusAndGet(t *testing.T) {
	t.Parallel()
	c, nc := rawSetup(t, client.Config{})
	var mu sync.Mutex
	var waits []int64
	queries := map[string]int{}
	respond(t, nc, subjects.Status(), func(m *nats.Msg) any {
		q := readStatusQuery(t, m)
		mu.Lock()
		defer mu.Unlock()
		waits = append(waits, q.WaitMS)
		queries[q.ID]++
		switch q.ID {
		case "running":
			return schema.Status{ID: q.ID, Status: schema.StatusRunning, Planner: "n2", StepsDone: 3, Steps: 10}
		case "gone":
			return schema.Status{ID: q.ID, Status: schema.StatusUnknown}
		case "nostore":
			return schema.Status{ID: q.ID, Status: schema.StatusUnknown,
				Error: schema.Errorf(schema.CodeStoreUnavailable, "enable JetStream")}
		case "done":
			return schema.Status{ID: q.ID, Status: schema.StatusDone, Planner: "n1", StepsDone: 2, Steps: 2,
				Result: map[string]any{"b": "B"}}
		case "failed":
			return schema.Status{ID: q.ID, Status: schema.StatusFailed, StepsDone: 1, Steps: 2,
				Result: map[string]any{"a": 1}, Error: &schema.Error{Code: schema.CodeFunctionError, Message: "boom", Step: "b"}}
		case "slow": // running at the first query, done at the second
			if queries[q.ID] == 1 {
				return schema.Status{ID: q.ID, Status: schema.StatusRunning, Steps: 1}
			}
			return schema.Status{ID: q.ID, Status: schema.StatusDone, StepsDone: 1, Steps: 1, Result: map[string]any{"x": true}}
		}
		return schema.Status{ID: q.ID, Status: schema.StatusUnknown, Error: schema.Errorf(schema.CodeInternal, "unexpected")}
	})

	st, err := c.Status(quick(t), "running")
	require.NoError(t, err)
	assert.Equal(t, &schema.Status{ID: "running", Status: schema.StatusRunning, Planner: "n2", StepsDone: 3, Steps: 10}, st)

	st, err = c.Status(quick(t), "gone")
	require.NoError(t, err, "an unknown id is an answer")
	assert.Equal(t, schema.StatusUnknown, st.Status)

	st, err = c.Status(quick(t), "nostore")
	require.ErrorIs(t, err, schema.ErrStoreUnavailable)
	assert.Equal(t, schema.StatusUnknown, st.Status)

	_, err = c.Get(quick(t), "running", false)
	var se *client.StatusError
	require.ErrorAs(t, err, &se)
	require.ErrorIs(t, err, client.ErrNotEnded)
	assert.NotErrorIs(t, err, client.ErrUnknownRequest)
	assert.Equal(t, "running", se.Status.Status)
	assert.Equal(t, "durable request \"running\" has not ended: running on n2, 3 of 10 steps done", err.Error())

	_, err = c.Get(quick(t), "gone", true)
	require.ErrorIs(t, err, client.ErrUnknownRequest)
	assert.NotErrorIs(t, err, client.ErrNotEnded)

	_, err = c.Get(quick(t), "nostore", false)
	require.ErrorIs(t, err, schema.ErrStoreUnavailable)

	resp, err := c.Get(quick(t), "done", false)
	require.NoError(t, err)
	assert.Equal(t, &schema.Response{ID: "done", Results: map[string]any{"b": "B"}}, resp)

	resp, err = c.Get(quick(t), "failed", false)
	require.ErrorIs(t, err, schema.ErrFunctionError)
	require.NotNil(t, resp)
	assert.Equal(t, map[string]any{"a": int64(1)}, resp.Results)
	assert.Same(t, resp.Error, schema.AsError(err))

	mu.Lock()
	waits = waits[:0]
	mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err = c.Get(ctx, "slow", true)
	require.NoError(t, err)
	assert.Equal(t, map[string]any{"x": true}, resp.Results)
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, waits, 2)
	for _, w := range waits {
		// Each query waits on the node, within the caller's deadline.
		assert.Greater(t, w, int64(3000))
		assert.LessOrEqual(t, w, int64(5000))
	}
}

// A waiting Get ends at its caller's deadline with the last status.
func TestDurableGetWaitEndsAtDeadline(t *testing.T) {
	t.Parallel()
	c, nc := rawSetup(t, client.Config{})
	done := make(chan struct{})
	respondUntil(t, nc, subjects.Status(), done, func(m *nats.Msg) any {
		q := readStatusQuery(t, m)
		// A node holds the query until the request ends, or wait_ms.
		select {
		case <-time.After(time.Duration(q.WaitMS) * time.Millisecond):
		case <-done:
			return nil
		}
		return schema.Status{ID: q.ID, Status: schema.StatusAccepted, Steps: 4}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 600*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Get(ctx, "queued", true)
	require.ErrorIs(t, err, client.ErrNotEnded)
	assert.Equal(t, "durable request \"queued\" has not ended: accepted, 0 of 4 steps done", err.Error())
	assert.Less(t, time.Since(start), 2*time.Second)
}

// Submit sends the request durable, to submit, with an id; the answer is
// a Status. A refusal is the Status's error; a node that answers a
// Response (one that does not run durable requests) is INTERNAL.
func TestSubmit(t *testing.T) {
	t.Parallel()
	c, nc := rawSetup(t, client.Config{Codec: codec.JSON})
	respond(t, nc, subjects.RPC(), func(m *nats.Msg) any {
		r := readRequest(t, m)
		assert.True(t, r.Durable)
		assert.True(t, r.Submit)
		assert.False(t, r.Stream)
		assert.NotEmpty(t, r.ID)
		switch r.Cmds[0].Fun {
		case "nostore":
			return schema.Status{ID: r.ID, Status: schema.StatusUnknown,
				Error: schema.Errorf(schema.CodeStoreUnavailable, "durable requests need JetStream")}
		case "old":
			return schema.Response{ID: r.ID, Results: map[string]any{"a": 1}}
		case "refused":
			return schema.Response{ID: r.ID, Error: &schema.Error{Code: schema.CodeInvalidRequest, Message: "bad"}}
		}
		return schema.Status{ID: r.ID, Status: schema.StatusAccepted, Steps: int64(len(r.Cmds))}
	})
	req := &schema.Request{Cmds: []schema.Command{{Name: "a", Fun: "echo", Args: []any{"x"}}}}
	st, err := c.Submit(quick(t), req)
	require.NoError(t, err)
	assert.Equal(t, schema.StatusAccepted, st.Status)
	assert.NotEmpty(t, st.ID, "the client picks an id")
	assert.Empty(t, req.ID, "the caller's request is not changed")
	assert.False(t, req.Durable)

	st, err = c.Submit(quick(t), &schema.Request{ID: "job-1", Cmds: req.Cmds})
	require.NoError(t, err)
	assert.Equal(t, "job-1", st.ID)

	st, err = c.Submit(quick(t), &schema.Request{Cmds: []schema.Command{{Name: "a", Fun: "nostore"}}})
	require.ErrorIs(t, err, schema.ErrStoreUnavailable)
	require.NotNil(t, st)
	assert.Same(t, st.Error, schema.AsError(err))

	_, err = c.Submit(quick(t), &schema.Request{Cmds: []schema.Command{{Name: "a", Fun: "old"}}})
	require.ErrorIs(t, err, schema.ErrInternal)
	assert.Contains(t, err.Error(), "durable requests")

	_, err = c.Submit(quick(t), &schema.Request{Cmds: []schema.Command{{Name: "a", Fun: "refused"}}})
	require.ErrorIs(t, err, schema.ErrInvalidRequest, "a Response's error is the error")
}

// Submit with no node: NO_ROUTE, after the short pauses of Run.
func TestSubmitNoResponders(t *testing.T) {
	t.Parallel()
	c, _ := rawSetup(t, client.Config{})
	start := time.Now()
	_, err := c.Submit(quick(t), &schema.Request{Cmds: []schema.Command{{Name: "a", Fun: "echo"}}})
	require.ErrorIs(t, err, schema.ErrNoRoute)
	assert.Less(t, time.Since(start), 2*time.Second)
}

// A durable request's planner may vanish: another node answers it later
// on the same reply subject, and the caller gets that answer, where a
// request that is not durable ends NODE_UNAVAILABLE.
func TestDurableRunOutlivesItsPlanner(t *testing.T) {
	t.Parallel()
	c, nc := rawSetup(t, client.Config{Codec: codec.JSON, PlannerCheck: 20 * time.Millisecond})
	// Node subjects are visible from here (a node answers sync), so
	// the silence of the planner's info subject means it is gone.
	respondRaw(t, nc, subjects.Sync(), "{}")
	durable := make(chan *nats.Msg, 1)
	sub, err := nc.Subscribe(subjects.RPC(), func(m *nats.Msg) {
		r := readRequest(t, m)
		// The planner says it plans it, and then is never heard of again.
		planned := &schema.Planned{ID: r.ID, Planner: "ghost", Incarnation: 1, Steps: 1}
		if err := mesh.RespondEvent(nc, m, codec.JSON, schema.EventPlanned, planned, nil); err != nil {
			t.Errorf("planned: %v", err)
		}
		if r.Durable {
			durable <- m
		}
	})
	require.NoError(t, err)
	defer func() { _ = sub.Unsubscribe() }()
	require.NoError(t, nc.Flush())

	type outcome struct {
		resp *schema.Response
		err  error
	}
	plain, lasting := make(chan outcome, 1), make(chan outcome, 1)
	cmds := []schema.Command{{Name: "a", Fun: "echo", Args: []any{"x"}}}
	go func() {
		resp, err := c.Run(quick(t), &schema.Request{ID: "plain", Cmds: cmds})
		plain <- outcome{resp, err}
	}()
	go func() {
		resp, err := c.Run(quick(t), &schema.Request{Cmds: cmds, Durability: schema.Durability{Durable: true}})
		lasting <- outcome{resp, err}
	}()
	o := <-plain
	require.ErrorIs(t, o.err, schema.ErrNodeUnavailable)
	assert.Contains(t, o.err.Error(), "ghost")

	// Now that the planner is surely lost, another node answers.
	var m *nats.Msg
	select {
	case m = <-durable:
	case <-quick(t).Done():
		t.Fatal("the durable request never came")
	}
	id := readRequest(t, m).ID
	require.NotEmpty(t, id, "the client gives a durable request an id")
	select {
	case o = <-lasting:
		t.Fatalf("the durable request ended before its answer: %v", o.err)
	default:
	}
	require.NoError(t, mesh.Respond(nc, m, codec.JSON, schema.Response{ID: id, Results: map[string]any{"a": "x"}}, nil))
	o = <-lasting
	require.NoError(t, o.err)
	assert.Equal(t, id, o.resp.ID)
	assert.Equal(t, map[string]any{"a": "x"}, o.resp.Results)
}

// WithDurable sends a call's request through a planner, durable.
func TestCallWithDurable(t *testing.T) {
	t.Parallel()
	c, nc := rawSetup(t, client.Config{Codec: codec.JSON})
	respond(t, nc, subjects.RPC(), func(m *nats.Msg) any {
		r := readRequest(t, m)
		if !r.Durable || r.Submit || r.ID == "" {
			b, _ := json.Marshal(r)
			return schema.Response{ID: r.ID, Error: schema.Errorf(schema.CodeInvalidRequest, "not durable: %s", b)}
		}
		return schema.Response{ID: r.ID, Results: map[string]any{r.Cmds[0].Name: "ok"}}
	})
	v, err := c.Call(quick(t), "echo", []any{"x"}, client.WithDurable())
	require.NoError(t, err)
	assert.Equal(t, "ok", v)
	_, err = c.Call(quick(t), "echo", []any{"x"})
	require.True(t, errors.Is(err, schema.ErrInvalidRequest), "without WithDurable the request is not durable: %v", err)
}

// A client that stops waiting for a request stops it in the cluster,
// except a durable request whose wait ran out: that one goes on (its
// outcome is for Get). The caller's own cancel stops a durable one too.
func TestDurableRunNotCancelledAtItsDeadline(t *testing.T) {
	t.Parallel()
	c, nc := rawSetup(t, client.Config{Codec: codec.JSON})
	got := make(chan string, 8)
	sub, err := nc.Subscribe(subjects.RPC(), func(m *nats.Msg) { got <- readRequest(t, m).ID }) // never answered
	require.NoError(t, err)
	defer func() { _ = sub.Unsubscribe() }()
	cancels := make(chan string, 8)
	csub, err := nc.Subscribe(subjects.CancelRequest(), func(m *nats.Msg) {
		var cr struct{ ID string }
		if err := json.Unmarshal(m.Data, &cr); err != nil {
			t.Errorf("cancel: %v", err)
		}
		cancels <- cr.ID
	})
	require.NoError(t, err)
	defer func() { _ = csub.Unsubscribe() }()
	require.NoError(t, nc.Flush())

	cmds := []schema.Command{{Name: "a", Fun: "echo", Args: []any{"x"}}}
	run := func(ctx context.Context, id string, durable bool) error {
		_, err := c.Run(ctx, &schema.Request{ID: id, Cmds: cmds, Durability: schema.Durability{Durable: durable}})
		return err
	}
	next := func(ch chan string) string {
		select {
		case id := <-ch:
			return id
		case <-quick(t).Done():
			t.Fatal("nothing came")
			return ""
		}
	}
	short := func() context.Context {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		t.Cleanup(cancel)
		return ctx
	}
	require.ErrorIs(t, run(short(), "kept", true), schema.ErrTimeout)
	assert.Equal(t, "kept", next(got))
	require.ErrorIs(t, run(short(), "plain", false), schema.ErrTimeout)
	assert.Equal(t, "plain", next(got))
	// The client's cancels come in the order it sent them: had it
	// cancelled "kept", that cancel would come first.
	assert.Equal(t, "plain", next(cancels))

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, "stopped", true) }()
	assert.Equal(t, "stopped", next(got))
	cancel()
	require.ErrorIs(t, <-done, schema.ErrCancelled)
	assert.Equal(t, "stopped", next(cancels))
}
