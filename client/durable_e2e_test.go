package client_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mpreg/mpreg/client"
	"github.com/mpreg/mpreg/internal/testcluster"
	"github.com/mpreg/mpreg/node"
	"github.com/mpreg/mpreg/schema"
)

// Durable requests against a real node on a NATS server with JetStream
// (docs/PROTOCOL.md §4.8).

// durableSetup is a server with JetStream (or without), node "a" with the
// functions of register and "count", which counts its runs, and a client.
type durableSetup struct {
	url  string
	c    *client.Client
	runs atomic.Int64
}

func newDurableSetup(t *testing.T, jetStream bool) *durableSetup {
	t.Helper()
	var opts []testcluster.ServerOption
	if jetStream {
		opts = append(opts, testcluster.WithJetStream(t.TempDir()))
	}
	srv := testcluster.Server(t, opts...)
	s := &durableSetup{url: srv.ClientURL()}
	n := testcluster.Node(t, s.url, testcluster.NodeConfig(t, "a"), func(n *node.Node) {
		register(n)
		if err := n.Register("count", func(x int64) int64 { return s.runs.Add(1) + x*0 }); err != nil {
			panic(err)
		}
	})
	testcluster.WaitForRoute(t, n.Table(), "count", nil, "a")
	s.c = testcluster.Client(t, s.url, client.Config{})
	testcluster.WaitForRoute(t, s.c.Table(), "count", nil, "a")
	return s
}

func durableReq(id string) *schema.Request {
	return &schema.Request{ID: id, Cmds: []schema.Command{
		{Name: "|sum", Fun: "add", Args: []any{int64(1), int64(2)}},
		{Name: "n", Fun: "count", Args: []any{"|sum"}},
	}}
}

// submit, status, get --wait, and get from another client: the result.
func TestDurableE2ESubmitStatusGet(t *testing.T) {
	t.Parallel()
	s := newDurableSetup(t, true)
	ctx := quick(t)
	st, err := s.c.Submit(ctx, durableReq(""))
	require.NoError(t, err)
	require.Equal(t, schema.StatusAccepted, st.Status)
	require.NotEmpty(t, st.ID)

	now, err := s.c.Status(ctx, st.ID)
	require.NoError(t, err)
	assert.Contains(t, []string{schema.StatusAccepted, schema.StatusRunning, schema.StatusDone}, now.Status)
	assert.Equal(t, st.ID, now.ID)

	resp, err := s.c.Get(ctx, st.ID, true)
	require.NoError(t, err)
	assert.Equal(t, &schema.Response{ID: st.ID, Results: map[string]any{"n": int64(1)}}, resp)

	done, err := s.c.Status(ctx, st.ID)
	require.NoError(t, err)
	assert.Equal(t, schema.StatusDone, done.Status)
	assert.Equal(t, int64(2), done.Steps)
	assert.Equal(t, int64(2), done.StepsDone)
	assert.Equal(t, "a", done.Planner)

	// Another process: only the id in common.
	fresh := testcluster.Client(t, s.url, client.Config{NoFollow: true})
	again, err := fresh.Get(ctx, st.ID, false)
	require.NoError(t, err)
	assert.Equal(t, resp, again)
	assert.Equal(t, int64(1), s.runs.Load(), "fetching the outcome runs nothing")

	unknown, err := fresh.Status(ctx, "no-such-request")
	require.NoError(t, err)
	assert.Equal(t, schema.StatusUnknown, unknown.Status)
	_, err = fresh.Get(ctx, "no-such-request", false)
	require.ErrorIs(t, err, client.ErrUnknownRequest)
}

// A durable request sent with Run answers as Run does; its outcome is
// kept for Get.
func TestDurableE2ERun(t *testing.T) {
	t.Parallel()
	s := newDurableSetup(t, true)
	ctx := quick(t)
	req := durableReq("")
	req.Durable = true
	resp, err := s.c.Run(ctx, req)
	require.NoError(t, err)
	require.NotEmpty(t, resp.ID)
	assert.Equal(t, map[string]any{"n": int64(1)}, resp.Results)

	again, err := s.c.Get(ctx, resp.ID, false)
	require.NoError(t, err)
	assert.Equal(t, resp, again)

	// The same id again runs nothing: the answer is the outcome.
	req.ID = resp.ID
	resp2, err := s.c.Run(ctx, req)
	require.NoError(t, err)
	assert.Equal(t, resp.Results, resp2.Results)
	assert.Equal(t, int64(1), s.runs.Load())
}

// A failed durable request: Get returns its response and error as Run.
func TestDurableE2EFailed(t *testing.T) {
	t.Parallel()
	s := newDurableSetup(t, true)
	ctx := quick(t)
	st, err := s.c.Submit(ctx, &schema.Request{ID: "will-fail", Cmds: []schema.Command{
		{Name: "ok", Fun: "add", Args: []any{int64(1), int64(1)}},
		{Name: "bad", Fun: "fail", Args: []any{"boom"}},
	}})
	require.NoError(t, err)
	require.Equal(t, "will-fail", st.ID)
	resp, err := s.c.Get(ctx, "will-fail", true)
	require.ErrorIs(t, err, schema.ErrFunctionError)
	require.NotNil(t, resp)
	assert.Equal(t, "will-fail", resp.ID)
	assert.Equal(t, "bad", resp.Error.Step)
}

// One run per id: a second submit answers the first's status; the same id
// with another body is INVALID_REQUEST with details.id.
func TestDurableE2EOneRunPerID(t *testing.T) {
	t.Parallel()
	s := newDurableSetup(t, true)
	ctx := quick(t)
	_, err := s.c.Submit(ctx, durableReq("once"))
	require.NoError(t, err)
	_, err = s.c.Get(ctx, "once", true)
	require.NoError(t, err)
	st, err := s.c.Submit(ctx, durableReq("once"))
	require.NoError(t, err)
	assert.Equal(t, schema.StatusDone, st.Status)
	assert.Equal(t, map[string]any{"n": int64(1)}, st.Result)
	assert.Equal(t, int64(1), s.runs.Load())

	other := durableReq("once")
	other.Cmds[0].Args = []any{int64(5), int64(5)}
	_, err = s.c.Submit(ctx, other)
	require.ErrorIs(t, err, schema.ErrInvalidRequest)
	details, _ := schema.AsError(err).Details.(map[string]any)
	assert.Equal(t, "once", details["id"])
}

// Without JetStream a durable request fails at once, STORE_UNAVAILABLE,
// saying to enable JetStream.
func TestDurableE2ENoJetStream(t *testing.T) {
	t.Parallel()
	s := newDurableSetup(t, false)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := s.c.Submit(ctx, durableReq(""))
	require.ErrorIs(t, err, schema.ErrStoreUnavailable)
	assert.Contains(t, err.Error(), "JetStream")

	req := durableReq("")
	req.Durable = true
	_, err = s.c.Run(ctx, req)
	require.ErrorIs(t, err, schema.ErrStoreUnavailable)

	_, err = s.c.Status(ctx, "any")
	require.ErrorIs(t, err, schema.ErrStoreUnavailable)
	assert.Equal(t, int64(0), s.runs.Load())
}
