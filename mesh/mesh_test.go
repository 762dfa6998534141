package mesh_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/mpreg/mpreg/bus"
	"github.com/mpreg/mpreg/codec"
	"github.com/mpreg/mpreg/internal/testcluster"
	"github.com/mpreg/mpreg/internal/testwait"
	"github.com/mpreg/mpreg/membership"
	"github.com/mpreg/mpreg/mesh"
	"github.com/mpreg/mpreg/node"
	"github.com/mpreg/mpreg/planner"
	"github.com/mpreg/mpreg/schema"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var subj = bus.NewSubjects("", "default")

func follow(t *testing.T, nc *nats.Conn, table *membership.Table) *mesh.Follower {
	t.Helper()
	f, err := mesh.Follow(testwait.Ctx(t), mesh.FollowConfig{
		Conn: nc, Subjects: subj, Cluster: "default", Table: table,
		SyncQuiet: 100 * time.Millisecond, PruneInterval: 50 * time.Millisecond, Logger: testcluster.Logger(t),
	})
	require.NoError(t, err)
	t.Cleanup(f.Close)
	return f
}

func hello(id string, funs map[string][]string, codecs ...string) *schema.Hello {
	if codecs == nil {
		codecs = []string{codec.JSONType}
	}
	return &schema.Hello{Cluster: "default", Node: id, Incarnation: time.Now().UnixMilli(), Version: 1,
		Funs: funs, Codecs: codecs, AdvertisedURLs: []string{}, Proto: schema.Proto}
}

func publishJSON(t *testing.T, nc *nats.Conn, subject string, v any) {
	t.Helper()
	data, err := codec.JSON.Encode(v)
	require.NoError(t, err)
	require.NoError(t, nc.PublishMsg(bus.NewMsg(subject, data, codec.JSONType, "")))
}

func TestFollowerSyncLearnsNodes(t *testing.T) {
	srv := testcluster.Server(t)
	url := srv.ClientURL()
	testcluster.Node(t, url, testcluster.NodeConfig(t, "n1"), nil)
	n2 := testcluster.Node(t, url, testcluster.NodeConfig(t, "n2", "gpu"), nil)
	testcluster.WaitForRoute(t, n2.Table(), "echo", nil, "n1", "n2")

	table := membership.New(membership.Config{DeadAfter: 300 * time.Millisecond})
	f := follow(t, testcluster.Conn(t, url), table)

	// Follow returns after one sync: both nodes are known without waiting.
	peers := table.Peers()
	require.Len(t, peers, 2)
	require.Equal(t, "n1", peers[0].Hello.Node)
	require.Equal(t, "n2", peers[1].Hello.Node)
	require.Equal(t, []string{"gpu"}, peers[1].Hello.Funs["echo"])
	require.Equal(t, []string{"n2"}, table.Eligible("echos", []string{"gpu"}))

	// Later nodes are learned from their hello, leavers from goodbye.
	testcluster.Node(t, url, testcluster.NodeConfig(t, "n3"), func(n *node.Node) {
		require.NoError(t, n.Register("third", func() {}))
	})
	testcluster.WaitForRoute(t, table, "third", nil, "n3")
	require.NoError(t, n2.Drain(testwait.Ctx(t)))
	testcluster.WaitForGone(t, table, "n2")
	require.Equal(t, []string{"n1", "n3"}, table.Eligible("echo", nil))

	// Heartbeats keep the others alive past the dead-after period.
	p0, _ := table.Get("n1")
	testcluster.WaitFor(t, "heartbeats past the dead-after period", func() error {
		p, _ := table.Get("n1")
		if !p.LastHeard.After(p0.LastHeard.Add(400 * time.Millisecond)) {
			return fmt.Errorf("last heard %v", p.LastHeard)
		}
		return nil
	})
	require.Equal(t, []string{"n1", "n3"}, table.Eligible("echo", nil))

	require.Zero(t, f.Foreign())
	f.Close()
	f.Close()
}

func TestFollowerHeartbeatFetchesHello(t *testing.T) {
	srv := testcluster.Server(t)
	nc := testcluster.Conn(t, srv.ClientURL())
	table := membership.New(membership.Config{})
	follow(t, testcluster.Conn(t, srv.ClientURL()), table)

	h := hello("quiet", map[string][]string{"f": {}})
	var infoAsked atomic.Int64
	sub, err := nc.Subscribe(subj.Info("quiet"), func(m *nats.Msg) {
		infoAsked.Add(1)
		if err := mesh.Respond(nc, m, codec.JSON, h, nil); err != nil {
			t.Errorf("respond: %v", err)
		}
	})
	require.NoError(t, err)
	defer func() { _ = sub.Unsubscribe() }()
	require.NoError(t, nc.Flush())

	// A heartbeat from an unknown node makes the follower ask for its hello.
	publishJSON(t, nc, subj.Heartbeat(), &schema.Heartbeat{Cluster: "default", Node: "quiet", Incarnation: h.Incarnation, Version: 1, Seq: 1})
	testcluster.WaitForRoute(t, table, "f", nil, "quiet")
	require.Equal(t, int64(1), infoAsked.Load())

	// A newer version in a heartbeat: asked again.
	h = hello("quiet", map[string][]string{"f": {}, "g": {}})
	h.Incarnation, h.Version = table.Peers()[0].Hello.Incarnation, 2
	publishJSON(t, nc, subj.Heartbeat(), &schema.Heartbeat{Cluster: "default", Node: "quiet", Incarnation: h.Incarnation, Version: 2, Seq: 2})
	testcluster.WaitForRoute(t, table, "g", nil, "quiet")
	require.Equal(t, int64(2), infoAsked.Load())
}

// answerInfo answers h.Node's info subject with h, as a node does.
func answerInfo(t *testing.T, nc *nats.Conn, h *schema.Hello) {
	t.Helper()
	sub, err := nc.Subscribe(subj.Info(h.Node), func(m *nats.Msg) {
		if err := mesh.Respond(nc, m, codec.JSON, h, nil); err != nil {
			t.Errorf("respond: %v", err)
		}
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	require.NoError(t, nc.Flush())
}

func TestFollowerDropsForeignAndUnknownProto(t *testing.T) {
	srv := testcluster.Server(t)
	nc := testcluster.Conn(t, srv.ClientURL())
	table := membership.New(membership.Config{})
	f := follow(t, testcluster.Conn(t, srv.ClientURL()), table)

	alien := hello("alien", map[string][]string{"x": {}})
	alien.Cluster = "other"
	answerInfo(t, nc, alien)
	publishJSON(t, nc, subj.Hello(), alien)
	publishJSON(t, nc, subj.Heartbeat(), &schema.Heartbeat{Cluster: "other", Node: "alien", Incarnation: 1, Version: 1})
	future := hello("future", map[string][]string{"x": {}})
	future.Proto = schema.ProtoMax + 1
	answerInfo(t, nc, future)
	publishJSON(t, nc, subj.Hello(), future)
	publishJSON(t, nc, subj.Hello(), map[string]any{"cluster": "default", "node": "bad node!", "incarnation": 1, "version": 1})
	// A hello alone adds no node: the node must answer for itself.
	publishJSON(t, nc, subj.Hello(), hello("ghost", map[string][]string{"x": {}}))
	marker := hello("marker", map[string][]string{"x": {}})
	answerInfo(t, nc, marker)
	publishJSON(t, nc, subj.Hello(), marker)

	testcluster.WaitForRoute(t, table, "x", nil, "marker")
	require.Equal(t, []string{"marker"}, table.Eligible("x", nil), "foreign, unsupported-proto, malformed and unanswered hellos are ignored")
	require.Equal(t, int64(2), f.Foreign())
}

// fakeNode answers exec on a node subject with fn and records each request's
// Content-Type.
func fakeNode(t *testing.T, nc *nats.Conn, id string, fn func(m *nats.Msg)) chan string {
	t.Helper()
	types := make(chan string, 16)
	sub, err := nc.Subscribe(subj.Exec(id), func(m *nats.Msg) {
		types <- m.Header.Get(codec.HeaderContentType)
		fn(m)
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	require.NoError(t, nc.Flush())
	return types
}

func TestExecer(t *testing.T) {
	srv := testcluster.Server(t)
	url := srv.ClientURL()
	nodeConn := testcluster.Conn(t, url)
	table := membership.New(membership.Config{})
	ex := &mesh.Execer{Conn: testcluster.Conn(t, url), Subjects: subj, Cluster: "default", Table: table, Logger: testcluster.Logger(t)}
	call := func(fun string, args ...any) *planner.Call {
		return &planner.Call{RequestID: "req", Step: "s", Fun: fun, Args: args}
	}

	// answer decodes the exec request in its own codec and replies with its
	// args.
	answer := func(m *nats.Msg) {
		tree, c, derr := mesh.Decode(m)
		if derr != nil {
			_ = mesh.Respond(nodeConn, m, c, (&schema.ExecReply{Error: schema.AsError(derr)}).Encodable(), nil)
			return
		}
		req, err := schema.ParseExecRequest(tree)
		if err != nil {
			_ = mesh.Respond(nodeConn, m, c, (&schema.ExecReply{Error: schema.AsError(err)}).Encodable(), nil)
			return
		}
		if req.Fun == "fail" {
			_ = mesh.Respond(nodeConn, m, c, (&schema.ExecReply{Error: &schema.Error{Code: schema.CodeFunctionError, Message: "no"}}).Encodable(), nil)
			return
		}
		_ = mesh.Respond(nodeConn, m, c, (&schema.ExecReply{Result: map[string]any{
			"cluster": req.Cluster, "id": req.ID, "args": req.Args, "has_deadline": req.DeadlineMS > 0,
		}}).Encodable(), nil)
	}
	jsonTypes := fakeNode(t, nodeConn, "json-only", answer)
	mpTypes := fakeNode(t, nodeConn, "both", answer)
	table.ApplyHello(hello("json-only", map[string][]string{"f": {}, "fail": {}}, codec.JSONType))
	table.ApplyHello(hello("both", map[string][]string{"f": {}}, codec.MsgPackType, codec.JSONType))

	t.Run("result in the peer's preferred codec", func(t *testing.T) {
		for id, types := range map[string]chan string{"json-only": jsonTypes, "both": mpTypes} {
			res, err := ex.Exec(testwait.Ctx(t), id, call("f", int64(1)<<62+1, []byte{1}))
			require.NoError(t, err)
			v := res.Value
			require.Equal(t, map[string]any{"cluster": "default", "id": "req/s", "has_deadline": true,
				"args": map[string]any{codec.JSONType: []any{int64(1)<<62 + 1, "AQ=="}, codec.MsgPackType: []any{int64(1)<<62 + 1, []byte{1}}}[testwait.Recv(t, types, "the exec")]},
				v, id)
		}
	})
	t.Run("error object", func(t *testing.T) {
		_, err := ex.Exec(testwait.Ctx(t), "json-only", call("fail"))
		require.ErrorIs(t, err, schema.ErrFunctionError)
		testwait.Recv(t, jsonTypes, "the exec")
	})
	t.Run("no responders", func(t *testing.T) {
		table.ApplyHello(hello("ghost", map[string][]string{"f": {}}))
		require.Contains(t, table.Eligible("f", nil), "ghost")
		start := time.Now()
		_, err := ex.Exec(testwait.Ctx(t), "ghost", call("f"))
		require.ErrorIs(t, err, schema.ErrNodeUnavailable)
		require.Less(t, time.Since(start), 2*time.Second)
		p, ok := table.Get("ghost")
		require.True(t, ok)
		require.False(t, p.Alive, "marked dead")
		require.Zero(t, p.Outstanding)
		require.NotContains(t, table.Eligible("f", nil), "ghost")
	})
	t.Run("node lost mid-step", func(t *testing.T) {
		got := fakeNode(t, nodeConn, "stuck", func(*nats.Msg) {})
		h := hello("stuck", map[string][]string{"f": {}, "g": {}})
		h.Idempotent = []string{"g"}
		table.ApplyHello(h)
		for _, fun := range []string{"f", "g"} {
			errc := make(chan error, 1)
			go func() {
				_, err := ex.Exec(testwait.Ctx(t), "stuck", call(fun))
				errc <- err
			}()
			testwait.Recv(t, got, "the exec to arrive")
			testcluster.WaitFor(t, "the request to be tracked", func() error {
				if p, _ := table.Get("stuck"); p.Outstanding != 1 {
					return fmt.Errorf("outstanding %d", p.Outstanding)
				}
				return nil
			})
			table.MarkDead("stuck")
			err := testwait.Recv(t, errc, "Exec to return after MarkDead")
			require.ErrorIs(t, err, schema.ErrNodeUnavailable, fun)
			var a *planner.AttemptError
			require.ErrorAs(t, err, &a, fun)
			require.Equal(t, planner.LostWhileRunning, a.Fact, fun)
			require.Equal(t, fun == "g", planner.Retryable(err), "only an idempotent step may be retried elsewhere (%s)", fun)
			table.ApplyHello(h) // alive again for the next round
		}
	})
	t.Run("request too large", func(t *testing.T) {
		_, err := ex.Exec(testwait.Ctx(t), "json-only", call("f", strings.Repeat("x", int(ex.Conn.MaxPayload()))))
		require.ErrorIs(t, err, schema.ErrPayloadTooLarge)
	})
}

func TestRespond(t *testing.T) {
	srv := testcluster.Server(t, testcluster.WithServerConfig(bus.ServerConfig{MaxPayload: 2048}))
	nc := testcluster.Conn(t, srv.ClientURL())
	big := strings.Repeat("y", 4000)
	var respondErr atomic.Value
	for subject, tooBig := range map[string]func(*schema.Error) any{
		"with-fallback": func(problem *schema.Error) any {
			return (&schema.ExecReply{Error: problem}).Encodable()
		},
		"without-fallback": nil,
	} {
		sub, err := nc.Subscribe(subject, func(m *nats.Msg) {
			_, c, _ := mesh.Decode(m)
			if err := mesh.Respond(nc, m, c, map[string]any{"result": big}, tooBig); err != nil {
				respondErr.Store(err)
			}
		})
		require.NoError(t, err)
		defer func() { _ = sub.Unsubscribe() }()
	}
	sub, err := nc.Subscribe("small", func(m *nats.Msg) {
		_, c, _ := mesh.Decode(m)
		_ = mesh.Respond(nc, m, c, map[string]any{"result": "ok"}, nil)
	})
	require.NoError(t, err)
	defer func() { _ = sub.Unsubscribe() }()
	require.NoError(t, nc.Flush())
	caller := testcluster.Conn(t, srv.ClientURL())

	for _, ct := range []string{codec.JSONType, codec.MsgPackType} {
		m, err := caller.RequestMsgWithContext(testwait.Ctx(t), bus.NewMsg("with-fallback", nil, ct, ""))
		require.NoError(t, err)
		require.Equal(t, ct, m.Header.Get(codec.HeaderContentType))
		tree, err := mesh.DecodeReply(m)
		require.NoError(t, err)
		rep, err := schema.ParseExecReply(tree)
		require.NoError(t, err)
		require.ErrorIs(t, rep.Error, schema.ErrPayloadTooLarge)
		require.Equal(t, int64(2048), rep.Error.Details.(map[string]any)["max"])
	}

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err = caller.RequestMsgWithContext(ctx, bus.NewMsg("without-fallback", nil, codec.JSONType, ""))
	require.ErrorIs(t, err, context.DeadlineExceeded, "nothing is sent without a fallback")
	testcluster.WaitFor(t, "Respond to report the size", func() error {
		if respondErr.Load() == nil {
			return errors.New("no error yet")
		}
		return nil
	})

	m, err := caller.RequestMsgWithContext(testwait.Ctx(t), bus.NewMsg("small", nil, codec.MsgPackType, codec.JSONType))
	require.NoError(t, err)
	require.Equal(t, codec.JSONType, m.Header.Get(codec.HeaderContentType), "Accept picks the reply codec")

	// No reply subject: nothing to do.
	require.NoError(t, mesh.Respond(nc, &nats.Msg{Subject: "x"}, codec.JSON, map[string]any{}, nil))
}

func TestDecode(t *testing.T) {
	_, reply, err := mesh.Decode(&nats.Msg{Data: []byte("x"), Header: nats.Header{"Content-Type": {"text/csv"}}})
	require.ErrorIs(t, err, schema.ErrUnsupportedCodec)
	require.Equal(t, codec.JSON, reply, "errors for unknown codecs go out in JSON")

	_, reply, err = mesh.Decode(&nats.Msg{Data: []byte{0xc1}, Header: nats.Header{"Content-Type": {codec.MsgPackType}}})
	require.ErrorIs(t, err, schema.ErrInvalidRequest)
	require.Equal(t, codec.MsgPack, reply)
	require.ErrorIs(t, err, codec.ErrDecode, "the decoder's error is kept as the cause")
	require.NotErrorIs(t, err, schema.ErrInternal)

	// Past its bound: PAYLOAD_TOO_LARGE, the codec's error kept as the
	// cause.
	_, _, _, err = mesh.DecodeSized(&nats.Msg{Data: []byte(`["aaaaaaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbbbbbbbbbbbbb"]`)}, 16, false)
	require.ErrorIs(t, err, schema.ErrPayloadTooLarge)
	require.ErrorIs(t, err, codec.ErrTooBig)

	tree, reply, err := mesh.Decode(&nats.Msg{Data: []byte(`{"a": 1}`)})
	require.Nil(t, err)
	require.Equal(t, codec.JSON, reply, "no header means JSON")
	require.Equal(t, map[string]any{"a": int64(1)}, tree)

	// A reply in a codec nobody speaks is the peer's fault, not the
	// caller's codec.
	_, derr := mesh.DecodeReply(&nats.Msg{Data: []byte("{}"), Header: nats.Header{"Content-Type": {"application/xml"}}})
	require.ErrorIs(t, derr, schema.ErrInternal)
}

// A retry-after applies only to a function the node lists as idempotent:
// a step that may not run twice waits for its one attempt.
func TestRetryAfterOnlyForIdempotent(t *testing.T) {
	srv := testcluster.Server(t)
	url := srv.ClientURL()
	table := membership.New(membership.Config{})
	ex := &mesh.Execer{Conn: testcluster.Conn(t, url), Subjects: subj, Cluster: "default", Table: table}
	fakeNode(t, testcluster.Conn(t, url), "slow", func(*nats.Msg) {}) // never answers
	for i, idem := range []bool{true, false} {
		h := hello("slow", map[string][]string{"f": {}})
		h.Version = int64(10 + i)
		h.RetryAfterMS = map[string]int64{"f": 50}
		if idem {
			h.Idempotent = []string{"f"}
		}
		table.ApplyHello(h)
		ctx, cancel := context.WithTimeout(context.Background(), 600*time.Millisecond)
		start := time.Now()
		_, err := ex.Exec(ctx, "slow", &planner.Call{RequestID: "r", Step: "s", Fun: "f"})
		cancel()
		if idem {
			var e *schema.Error
			require.ErrorAs(t, err, &e)
			require.Equal(t, schema.CodeTimeout, e.Code)
			require.Less(t, time.Since(start), 500*time.Millisecond, "the attempt ended at its retry-after")
		} else {
			require.ErrorIs(t, err, context.DeadlineExceeded, "the step waited for its budget")
			require.GreaterOrEqual(t, time.Since(start), 600*time.Millisecond)
		}
	}
}

// A node that only runs steps (no rpc subject of its own) is offered no
// delegated steps after the first attempt found no responders.
func TestDelegateToStepsOnlyNode(t *testing.T) {
	srv := testcluster.Server(t)
	url := srv.ClientURL()
	nodeConn := testcluster.Conn(t, url)
	table := membership.New(membership.Config{})
	ex := &mesh.Execer{Conn: testcluster.Conn(t, url), Subjects: subj, Cluster: "default", Table: table, Logger: testcluster.Logger(t)}
	fakeNode(t, nodeConn, "steps-only", func(*nats.Msg) {})
	table.ApplyHello(hello("steps-only", map[string][]string{"f": {"x"}}))

	node, ok := ex.Pinned("f", []string{"x"})
	require.True(t, ok)
	require.Equal(t, "steps-only", node)
	_, err := ex.Delegate(testwait.Ctx(t), node, &schema.Request{ID: "r/~a.0", Cmds: []schema.Command{{Name: "~a.0", Fun: "f"}}})
	require.ErrorIs(t, err, planner.ErrNotDelegated)
	_, ok = ex.Pinned("f", []string{"x"})
	require.False(t, ok, "the node that has no rpc subject is not offered steps again")
}
