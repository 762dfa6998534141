package node_test

// Messages a hostile or broken peer sends over plain NATS, as an attacker
// would: nothing here may cut a node off from NATS, stop it serving, or
// take a live node out of routing for longer than a heartbeat.

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/mpreg/mpreg/bus"
	"github.com/mpreg/mpreg/client"
	"github.com/mpreg/mpreg/codec"
	"github.com/mpreg/mpreg/internal/testcluster"
	"github.com/mpreg/mpreg/internal/testwait"
	"github.com/mpreg/mpreg/node"
	"github.com/mpreg/mpreg/schema"
)

// sleeper registers sleep(ms): it waits ms milliseconds or until its
// context ends.
func sleeper(n *node.Node) {
	_ = n.Register("sleep", func(ctx context.Context, ms int64) (int64, error) {
		select {
		case <-time.After(time.Duration(ms) * time.Millisecond):
			return ms, nil
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}, node.WithParams("ms"))
}

// rawConn connects a plain nats.go client (no MPREG code) to url.
func rawConn(t testing.TB, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	return nc
}

// requireServing checks that nc is still connected and that n still plans
// and answers a request over it.
func requireServing(t testing.TB, caller *nats.Conn, nodes ...*node.Node) {
	t.Helper()
	for _, n := range nodes {
		select {
		case <-n.Done():
			t.Fatalf("node %s stopped", n.ID())
		default:
		}
		resp := rpcJSON(t, caller, `{"cmds":[{"name":"a","fun":"whoami","locs":["at-`+n.ID()+`"]}]}`)
		require.Nil(t, resp["error"], "node %s: %v", n.ID(), resp)
		require.Equal(t, map[string]any{"a": n.ID()}, resp["results"])
	}
}

// servingNode starts a node that offers whoami with loc "at-<id>" and
// sleep.
func servingNode(t testing.TB, url, id string) *node.Node {
	return servingNodeWith(t, url, id, nil)
}

// servingNodeWith is servingNode with its config changed by edit.
func servingNodeWith(t testing.TB, url, id string, edit func(*node.Config)) *node.Node {
	cfg := testcluster.NodeConfig(t, id, "at-"+id)
	if edit != nil {
		edit(&cfg)
	}
	return testcluster.Node(t, url, cfg, func(n *node.Node) {
		_ = n.Register("whoami", whoami(id))
		sleeper(n)
	})
}

// servingPair starts a server and the serving nodes n1 and n2, each
// routing to the other.
func servingPair(t testing.TB) (*bus.Server, *node.Node, *node.Node) {
	t.Helper()
	srv := testcluster.Server(t)
	n1 := servingNode(t, srv.ClientURL(), "n1")
	n2 := servingNode(t, srv.ClientURL(), "n2")
	testcluster.WaitForRoute(t, n1.Table(), "whoami", []string{"at-n2"}, "n2")
	testcluster.WaitForRoute(t, n2.Table(), "whoami", []string{"at-n1"}, "n1")
	return srv, n1, n2
}

func TestLongPlannerAckSubjectKeepsPlannerConnected(t *testing.T) {
	srv := testcluster.Server(t)
	n := servingNode(t, srv.ClientURL(), "n1")
	caller := rawConn(t, srv.ClientURL())

	long := strings.Repeat("a", 4100)
	for i := 0; i < 6; i++ {
		msg := &nats.Msg{Subject: rpcSubject, Data: []byte(`{"cmds":[{"name":"a","fun":"sleep","args":[300]}]}`),
			Header: nats.Header{"Mpreg-Planner-Ack": {long}}}
		ctx, cancel := context.WithTimeout(context.Background(), bound)
		m, err := caller.RequestMsgWithContext(ctx, msg)
		cancel()
		require.NoError(t, err, "request %d", i)
		// The request is served; only the ack is not sent.
		require.Equal(t, map[string]any{"a": int64(300)}, decodeAs(t, m, "application/json")["results"], "request %d", i)
	}
	requireServing(t, caller, n)
}

func TestHeartbeatWithLongNodeIDKeepsNodesConnected(t *testing.T) {
	srv := testcluster.Server(t)
	n1 := servingNode(t, srv.ClientURL(), "n1")
	n2 := servingNode(t, srv.ClientURL(), "n2")
	testcluster.WaitForRoute(t, n1.Table(), "whoami", []string{"at-n2"}, "n2")
	attacker := rawConn(t, srv.ClientURL())

	for _, id := range []string{strings.Repeat("z", 4100), "bad id", "a.b", "*", ">", strings.Repeat("x", 65)} {
		hb := fmt.Sprintf(`{"cluster":"default","node":%q,"incarnation":1,"version":1}`, id)
		require.NoError(t, attacker.Publish("mpreg.default.gossip.heartbeat", []byte(hb)))
		require.NoError(t, attacker.Publish("mpreg.default.gossip.goodbye", []byte(hb)))
		require.NoError(t, attacker.Publish("mpreg.default.gossip.hello", []byte(hb)))
	}
	require.NoError(t, attacker.Flush())
	// Give the nodes the time to act on them (asking the fake node's info
	// subject is what used to cut them off); then they must still serve.
	waitForHeartbeats(t, n1, n2)
	requireServing(t, attacker, n1, n2)
}

// waitForHeartbeats waits until every node has heard a fresh heartbeat from
// every other one (so that gossip sent before the call has been handled).
func waitForHeartbeats(t testing.TB, nodes ...*node.Node) {
	t.Helper()
	since := time.Now()
	testcluster.WaitFor(t, "fresh heartbeats", func() error {
		for _, a := range nodes {
			for _, b := range nodes {
				if a == b {
					continue
				}
				p, ok := a.Table().Get(b.ID())
				if !ok || !p.LastHeard.After(since) {
					return fmt.Errorf("%s has not heard %s since %s", a.ID(), b.ID(), since.Format(time.StampMicro))
				}
			}
		}
		return nil
	})
}

// A node whose connection is closed under it stops, and says why; one
// stopped by its owner has no error.
func TestNodeStopsWhenItsConnectionCloses(t *testing.T) {
	srv := testcluster.Server(t)
	nc := testcluster.Conn(t, srv.ClientURL())
	n := testcluster.StartNode(t, nc, testcluster.NodeConfig(t, "n1"), nil)
	require.NoError(t, n.Err())
	nc.Close()
	testwait.Recv(t, n.Done(), "the node to stop")
	require.ErrorIs(t, n.Err(), node.ErrConnClosed)

	other := testcluster.Node(t, srv.ClientURL(), testcluster.NodeConfig(t, "n2"), nil)
	other.Close()
	require.NoError(t, other.Err())
}

// Stats may be read while the node starts (the race detector checks it).
func TestStatsDuringStart(t *testing.T) {
	srv := testcluster.Server(t)
	n, err := node.New(testcluster.Conn(t, srv.ClientURL()), testcluster.NodeConfig(t, "n1"))
	require.NoError(t, err)
	defer n.Close()
	stop := make(chan struct{})
	read := make(chan struct{})
	go func() {
		defer close(read)
		for {
			select {
			case <-stop:
				return
			default:
				_ = n.Stats()
			}
		}
	}()
	require.NoError(t, n.Start(testwait.Ctx(t)))
	close(stop)
	<-read
	require.Zero(t, n.Stats().Foreign)
}

// Two processes started at the same instant under one node id (so with the
// same incarnation, their start time in ms) must not both serve: every
// step sent to the id would run twice.
func TestSimultaneousStartsUnderOneID(t *testing.T) {
	srv := testcluster.Server(t)
	for round := range 5 {
		inc := time.Now().UnixMilli()
		var twins [2]*node.Node
		for i := range twins {
			n, err := node.New(testcluster.Conn(t, srv.ClientURL()), testcluster.NodeConfig(t, "twin"))
			require.NoError(t, err)
			node.SetIncarnation(n, inc)
			twins[i] = n
		}
		errs := make(chan error, 2)
		for _, n := range twins {
			go func() { errs <- n.Start(testwait.Ctx(t)) }()
		}
		started := 0
		for range twins {
			err := testwait.Recv(t, errs, "a start to end")
			if err == nil {
				started++
			} else {
				require.ErrorIs(t, err, node.ErrNodeIDInUse, "round %d", round)
			}
		}
		require.LessOrEqual(t, started, 1, "round %d: both processes serve under one id", round)
		for _, n := range twins {
			n.Close()
		}
	}
}

// waitIdle waits until n runs and queues no step.
func waitIdle(t testing.TB, n *node.Node) {
	t.Helper()
	testcluster.WaitFor(t, n.ID()+" to hold no step", func() error {
		if s := n.Stats(); s.Inflight != 0 {
			return fmt.Errorf("%d steps in flight", s.Inflight)
		}
		return nil
	})
}

// waitBusy waits until n runs or queues k steps.
func waitBusy(t testing.TB, n *node.Node, k int64) {
	t.Helper()
	testcluster.WaitFor(t, fmt.Sprintf("%s to hold %d steps", n.ID(), k), func() error {
		if s := n.Stats(); s.Inflight != k {
			return fmt.Errorf("%d steps in flight", s.Inflight)
		}
		return nil
	})
}

// A caller that gives up cancels its request by id on P.<cluster>.cancel;
// the planner stops it, the step's slot is freed at once on whichever node
// runs it, and the caller gets CANCELLED. Before, Ctrl-C on `mpreg call
// sleep 6000` left the step running for its whole 6 s.
func TestCancelRequestByID(t *testing.T) {
	srv, n1, n2 := servingPair(t)
	caller := rawConn(t, srv.ClientURL())

	for _, runner := range []*node.Node{n1, n2} {
		// Raw NATS: whichever node plans it, the step runs on runner.
		id := "cancel-me-" + runner.ID()
		reply := make(chan *nats.Msg, 1)
		go func() {
			body := `{"id":"` + id + `","cmds":[{"name":"s","fun":"sleep","args":[6000],"locs":["at-` + runner.ID() + `"]}]}`
			m, _ := caller.Request(rpcSubject, []byte(body), bound)
			reply <- m
		}()
		waitBusy(t, runner, 1)
		start := time.Now()
		require.NoError(t, caller.Publish("mpreg.default.cancel", []byte(`{"id":"`+id+`"}`)))
		m := testwait.Recv(t, reply, "the cancelled request's reply")
		require.NotNil(t, m)
		resp := decodeAs(t, m, "application/json")
		require.Equal(t, id, resp["id"])
		require.Equal(t, "CANCELLED", wireError(t, resp)["code"])
		waitIdle(t, runner)
		require.Less(t, time.Since(start), 3*time.Second, "the slot is freed long before the step would end")
	}

	// The Go client sends the cancel when its caller's context ends.
	c := testcluster.Client(t, srv.ClientURL(), client.Config{NoFollow: true})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := c.Call(ctx, "sleep", []any{6000}, client.WithLocs("at-n1"))
		done <- err
	}()
	waitBusy(t, n1, 1)
	cancel()
	requireCode(t, testwait.Recv(t, done, "the call to end"), schema.CodeCancelled)
	waitIdle(t, n1)
}

// A request carries its caller's absolute deadline (deadline_ms): a planner
// that reads it after the deadline, as a stalled planner does, answers
// TIMEOUT and runs nothing; one that reads it in time ends it at the
// deadline even when timeout_ms allows more.
func TestRequestDeadline(t *testing.T) {
	srv := testcluster.Server(t)
	var calls atomic.Int64
	testcluster.Node(t, srv.ClientURL(), testcluster.NodeConfig(t, "n1"), func(n *node.Node) {
		sleeper(n)
		_ = n.Register("count", func() int64 { return calls.Add(1) })
	})
	caller := rawConn(t, srv.ClientURL())

	past := time.Now().Add(-time.Second).UnixMilli()
	resp := rpcJSON(t, caller, fmt.Sprintf(`{"cmds":[{"name":"c","fun":"count"}],"deadline_ms":%d}`, past))
	e := wireError(t, resp)
	require.Equal(t, "TIMEOUT", e["code"])
	require.Zero(t, calls.Load(), "nothing ran")

	start := time.Now()
	soon := start.Add(300 * time.Millisecond).UnixMilli()
	resp = rpcJSON(t, caller, fmt.Sprintf(`{"cmds":[{"name":"s","fun":"sleep","args":[5000]}],"timeout_ms":20000,"deadline_ms":%d}`, soon))
	require.Equal(t, "TIMEOUT", wireError(t, resp)["code"])
	require.Less(t, time.Since(start), 4*time.Second, "the deadline ended it, not timeout_ms")

	resp = rpcJSON(t, caller, `{"cmds":[{"name":"c","fun":"count"}],"deadline_ms":-1}`)
	require.Equal(t, "INVALID_REQUEST", wireError(t, resp)["code"])
}

// fake is a node written by hand over plain NATS: it answers sync and info
// with its hello and exec with what its handler returns.
type fake struct {
	t     testing.TB
	nc    *nats.Conn
	id    string
	hello map[string]any
}

// newFake announces a node id offering funs (fun → locs) and serves exec
// with handle, which returns the reply's Content-Type and body.
func newFake(t testing.TB, url, id string, funs map[string][]string, handle func(req map[string]any) (string, []byte)) *fake {
	t.Helper()
	f := &fake{t: t, nc: rawConn(t, url), id: id, hello: map[string]any{
		"cluster": "default", "node": id, "incarnation": time.Now().UnixMilli(), "version": 1,
		"funs": funs, "codecs": []string{"application/msgpack", "application/json"}, "advertised_urls": []string{}, "proto": 1}}
	respond := func(m *nats.Msg, ct string, body []byte) {
		out := nats.NewMsg(m.Reply)
		out.Header.Set("Content-Type", ct)
		out.Data = body
		_ = m.RespondMsg(out)
	}
	for subject, h := range map[string]nats.MsgHandler{
		"mpreg.default.node." + id + ".exec": func(m *nats.Msg) {
			req, ok := codec.ByType(m.Header.Get("Content-Type"))
			require.True(t, ok)
			tree, derr := req.Decode(m.Data)
			require.NoError(t, derr)
			body := tree.(map[string]any)
			if handle == nil {
				out, err := req.Encode(map[string]any{"result": defaultFake(body)})
				require.NoError(t, err)
				respond(m, req.ContentType(), out)
				return
			}
			ct, out := handle(body)
			respond(m, ct, out)
		},
		"mpreg.default.node." + id + ".info": func(m *nats.Msg) { respond(m, "application/json", mustJSON(t, f.hello)) },
		"mpreg.default.gossip.sync":          func(m *nats.Msg) { respond(m, "application/json", mustJSON(t, f.hello)) },
	} {
		sub, err := f.nc.Subscribe(subject, h)
		require.NoError(t, err)
		require.NoError(t, sub.SetPendingLimits(-1, -1))
	}
	require.NoError(t, f.nc.Flush())
	require.NoError(t, f.nc.Publish("mpreg.default.gossip.hello", mustJSON(t, f.hello)))
	require.NoError(t, f.nc.Flush())
	// Heartbeats every 100 ms, as testcluster's nodes, until cleanup, on a
	// connection of their own (as a real node's are not held up by its
	// exec traffic, which its subscriptions buffer).
	beats := rawConn(t, url)
	stop, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for seq := 1; ; seq++ {
			_ = beats.Publish("mpreg.default.gossip.heartbeat", mustJSON(t, map[string]any{"cluster": "default", "node": id,
				"incarnation": f.hello["incarnation"], "version": 1, "seq": seq, "load": map[string]any{"inflight": 0, "limit": 8}}))
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-stopped })
	return f
}

// defaultFake runs the functions fakes offer by default: blob(n) and
// size(s).
func defaultFake(req map[string]any) any {
	args, _ := req["args"].([]any)
	switch req["fun"] {
	case "blob":
		return strings.Repeat("b", int(args[0].(int64)))
	case "size":
		return int64(len(args[0].(string)))
	}
	return nil
}

// A peer's reply is checked like a request: an error code outside the
// protocol's list becomes INTERNAL (the peer's code kept in details), and a
// reply in a codec nobody speaks is the peer's fault (INTERNAL), not the
// caller's (UNSUPPORTED_CODEC).
func TestBadRepliesFromAPeer(t *testing.T) {
	srv := testcluster.Server(t)
	n1 := servingNode(t, srv.ClientURL(), "n1")
	newFake(t, srv.ClientURL(), "odd-1", map[string][]string{"weird": {}, "xml": {}}, func(req map[string]any) (string, []byte) {
		if req["fun"] == "xml" {
			return "application/xml", []byte("<result/>")
		}
		return "application/json", []byte(`{"error":{"code":"TEAPOT","message":"I am a teapot","details":{"spout":1}}}`)
	})
	testcluster.WaitForRoute(t, n1.Table(), "weird", nil, "odd-1")
	caller := rawConn(t, srv.ClientURL())

	e := wireError(t, rpcJSON(t, caller, `{"cmds":[{"name":"w","fun":"weird"}]}`))
	require.Equal(t, "INTERNAL", e["code"])
	require.Equal(t, "TEAPOT", details(t, e)["code"])
	require.Contains(t, e["message"], "I am a teapot")

	e = wireError(t, rpcJSON(t, caller, `{"cmds":[{"name":"x","fun":"xml"}]}`))
	require.Equal(t, "INTERNAL", e["code"])
	require.Contains(t, e["message"], "application/xml")
}

// An exec that names no deadline runs no longer than a request may (the
// node's MaxTimeout), nor does one whose deadline is further off.
func TestExecWithoutDeadlineIsBounded(t *testing.T) {
	srv := testcluster.Server(t)
	cfg := testcluster.NodeConfig(t, "n1")
	cfg.Limits.MaxTimeout = 300 * time.Millisecond
	testcluster.Node(t, srv.ClientURL(), cfg, sleeper)
	caller := rawConn(t, srv.ClientURL())
	for _, body := range []map[string]any{
		{"cluster": "default", "id": "r/s", "fun": "sleep", "args": []any{10_000}},
		{"cluster": "default", "id": "r/s", "fun": "sleep", "args": []any{10_000}, "deadline_ms": time.Now().Add(time.Hour).UnixMilli()},
	} {
		start := time.Now()
		e := wireError(t, execJSON(t, caller, "n1", body))
		require.Equal(t, "TIMEOUT", e["code"])
		require.Less(t, time.Since(start), 5*time.Second)
	}
}

// Bodies that decode to far more memory than they take on the wire (1 MiB
// of one-byte empty maps) are refused, PAYLOAD_TOO_LARGE naming the limit,
// or OVERLOADED while the node holds its limit of request memory; sixteen
// at once used to add gigabytes to the node.
func TestDecodeBombs(t *testing.T) {
	srv := testcluster.Server(t)
	n := servingNode(t, srv.ClientURL(), "n1")
	caller := rawConn(t, srv.ClientURL())
	k := 1<<20 - 1024
	// {"cmds": [{"name":"a","fun":"echo","args":[{},{},...]}]} in MessagePack.
	body := []byte{0x81, 0xa4, 'c', 'm', 'd', 's', 0x91, 0x83,
		0xa4, 'n', 'a', 'm', 'e', 0xa1, 'a', 0xa3, 'f', 'u', 'n', 0xa4, 'e', 'c', 'h', 'o',
		0xa4, 'a', 'r', 'g', 's', 0xdd, byte(k >> 24), byte(k >> 16), byte(k >> 8), byte(k)}
	body = append(body, bytes.Repeat([]byte{0x80}, k)...)
	hdr := nats.Header{"Content-Type": {"application/msgpack"}, "Accept": {"application/json"}}
	codes := make(chan any, 16)
	for range 16 {
		go func() {
			m, err := caller.RequestMsg(&nats.Msg{Subject: rpcSubject, Data: body, Header: hdr}, bound)
			if err != nil {
				codes <- err
				return
			}
			resp := decodeJSON(t, m.Data)
			e, _ := resp["error"].(map[string]any)
			codes <- e["code"]
		}()
	}
	for range 16 {
		code := testwait.Recv(t, codes, "a reply")
		require.Contains(t, []any{"PAYLOAD_TOO_LARGE", "OVERLOADED"}, code)
	}
	requireServing(t, caller, n)
}

// pinned sends k requests whose step needs n's loc and requires every one
// to run there.
func pinned(t testing.TB, caller *nats.Conn, n *node.Node, k int) {
	t.Helper()
	for i := range k {
		resp := rpcJSON(t, caller, `{"cmds":[{"name":"a","fun":"whoami","locs":["at-`+n.ID()+`"]}]}`)
		require.Nil(t, resp["error"], "request %d: %v", i, resp)
	}
}

// Forged gossip does not take a live node out of routing: a goodbye with
// its incarnation, a hello with a higher version and no functions, a hello
// or heartbeat with a larger incarnation. Peers check such claims with the
// node itself, and the node refutes what it did not say (a higher version
// than it has).
func TestForgedGossipKeepsLiveNodeRouted(t *testing.T) {
	srv, n1, n2 := servingPair(t)
	attacker := rawConn(t, srv.ClientURL())
	held, _ := n1.Table().Get("n2")
	h := held.Hello

	forged := map[string]map[string]any{
		"goodbye": {"cluster": "default", "node": "n2", "incarnation": h.Incarnation, "instance": h.Instance},
		"empty hello, higher version": {"cluster": "default", "node": "n2", "incarnation": h.Incarnation, "instance": h.Instance,
			"version": h.Version + 1000, "funs": map[string]any{}, "codecs": []any{"application/json"}, "proto": 1},
		"hello, larger incarnation": {"cluster": "default", "node": "n2", "incarnation": h.Incarnation + 60_000,
			"version": 1, "funs": map[string]any{}, "codecs": []any{"application/json"}, "proto": 1},
		"heartbeat, larger incarnation": {"cluster": "default", "node": "n2", "incarnation": h.Incarnation + 60_000, "version": 1},
		"goodbye, larger incarnation":   {"cluster": "default", "node": "n2", "incarnation": h.Incarnation + 60_000},
	}
	subject := map[string]string{"goodbye": "goodbye", "empty hello, higher version": "hello", "hello, larger incarnation": "hello",
		"heartbeat, larger incarnation": "heartbeat", "goodbye, larger incarnation": "goodbye"}
	for name, body := range forged {
		require.NoError(t, attacker.Publish("mpreg.default.gossip."+subject[name], mustJSON(t, body)), name)
		require.NoError(t, attacker.Flush())
		// Right away and after a round of heartbeats, n1 routes to n2.
		pinned(t, attacker, n2, 20)
		waitForHeartbeats(t, n1, n2)
		pinned(t, attacker, n2, 5)
		p, ok := n1.Table().Get("n2")
		require.True(t, ok, name)
		require.True(t, p.Alive, name)
		require.Equal(t, h.Incarnation, p.Hello.Incarnation, name)
		require.Contains(t, p.Hello.Funs, "whoami", name)
	}
	// The claimed version was refuted: n2 now announces a higher one.
	testcluster.WaitFor(t, "n2 to refute the higher version", func() error {
		if p, _ := n1.Table().Get("n2"); p.Hello.Version <= h.Version+1000 {
			return fmt.Errorf("version %d", p.Hello.Version)
		}
		return nil
	})
	pinned(t, attacker, n2, 5)
}

// A flood of hellos from made-up nodes neither enters the table nor stops
// the real nodes from serving: a node joins a peer's view only once it has
// answered for itself, and the peer asks a bounded number at a time. Before,
// 30,000 fake nodes in 3 s cut throughput to a few percent for 30 s, with
// false NO_ROUTE.
func TestHelloFlood(t *testing.T) {
	// The nodes beat every 100 ms as in the other tests, but are declared
	// dead only after 5 s of silence: the flood (and a loaded machine
	// under -race) may delay a heartbeat past the usual 300 ms, and this
	// test is about the table and the routing, not about liveness.
	srv := testcluster.Server(t)
	patient := func(c *node.Config) { c.Gossip.DeadAfter = 5 * time.Second }
	n1 := servingNodeWith(t, srv.ClientURL(), "n1", patient)
	n2 := servingNodeWith(t, srv.ClientURL(), "n2", patient)
	testcluster.WaitForRoute(t, n1.Table(), "whoami", []string{"at-n2"}, "n2")
	testcluster.WaitForRoute(t, n2.Table(), "whoami", []string{"at-n1"}, "n1")
	attacker := rawConn(t, srv.ClientURL())
	caller := rawConn(t, srv.ClientURL())

	fakes := 30_000
	if raceEnabled {
		fakes = 10_000
	}
	flooded := make(chan error, 1)
	go func() {
		for i := range fakes {
			id := fmt.Sprintf("fake-%d", i)
			if err := attacker.Publish("mpreg.default.gossip.hello", mustJSON(t, map[string]any{
				"cluster": "default", "node": id, "incarnation": 1, "version": 1,
				"funs": map[string]any{"whoami": []any{"at-n2"}}, "codecs": []any{"application/json"},
				"advertised_urls": []any{"nats://10.255.0.1:4222"}, "proto": 1})); err != nil {
				flooded <- err
				return
			}
		}
		flooded <- attacker.Flush()
	}()
	// Requests during the flood all run where they must.
	for done := false; !done; {
		select {
		case err := <-flooded:
			require.NoError(t, err)
			done = true
		default:
			pinned(t, caller, n2, 1)
			pinned(t, caller, n1, 1)
		}
	}
	waitForHeartbeats(t, n1, n2)
	pinned(t, caller, n2, 10)
	for _, n := range []*node.Node{n1, n2} {
		require.Len(t, n.Table().Peers(), 2, "%s's table holds only the real nodes", n.ID())
		require.NotContains(t, n.Table().AdvertisedURLs(), "nats://10.255.0.1:4222", "no forged URL")
	}
}

// Three NATS servers whose routes form after their nodes started, a node on
// each: once `mpreg peers` through every server lists every node, a request
// for any node's loc through any server is served. A planner that has not
// heard of a node yet (its hello went out before the routes were up) syncs
// before it answers NO_ROUTE; before, 4 runs in 7 got NO_ROUTE.
func TestNoRouteFromAStaleView(t *testing.T) {
	for round := range 3 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		hubPort := l.Addr().(*net.TCPAddr).Port
		require.NoError(t, l.Close())
		hubRoute := fmt.Sprintf("nats-route://127.0.0.1:%d", hubPort)
		start := func(port int, routes ...string) *bus.Server {
			s, err := bus.StartServer(bus.ServerConfig{Host: "127.0.0.1", Port: -1,
				Cluster: bus.ClusterConfig{Name: "c", Host: "127.0.0.1", Port: port, Routes: routes}})
			require.NoError(t, err)
			t.Cleanup(s.Shutdown)
			return s
		}
		var servers []*bus.Server
		var nodes []*node.Node
		addNode := func(s *bus.Server) {
			// Production heartbeats (1 s): a node heard of only by its
			// heartbeat is heard of late.
			id := fmt.Sprintf("r%d-n%d", round, len(nodes))
			cfg := testcluster.NodeConfig(t, id, "at-"+id)
			cfg.Gossip.HeartbeatInterval = time.Second
			servers = append(servers, s)
			nodes = append(nodes, testcluster.Node(t, s.ClientURL(), cfg, func(n *node.Node) {
				_ = n.Register("whoami", whoami(id))
			}))
		}
		// Two servers route to a hub that is not up yet; each gets a node,
		// which sees no other. Then the hub and its node come up.
		addNode(start(-1, hubRoute))
		addNode(start(-1, hubRoute))
		addNode(start(hubPort))
		for _, s := range servers {
			c := testcluster.Client(t, s.ClientURL(), client.Config{NoFollow: true})
			testcluster.WaitFor(t, "peers through "+s.ClientURL(), func() error {
				ps, err := c.Peers(testwait.Ctx(t))
				if err != nil || len(ps) != len(nodes) {
					return fmt.Errorf("%d peers: %w", len(ps), err)
				}
				return nil
			})
		}
		for _, s := range servers {
			caller := rawConn(t, s.ClientURL())
			for _, n := range nodes {
				pinned(t, caller, n, 2)
			}
		}
		for _, n := range nodes {
			n.Close()
		}
	}
}

// Close on a nil node does nothing (a deferred Close after a failed New).
func TestCloseNilNode(*testing.T) {
	var n *node.Node
	n.Close()
}
