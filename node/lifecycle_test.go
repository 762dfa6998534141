package node_test

// docs/PROTOCOL.md §7 membership as seen through routing: functions added and
// removed at run time, goodbye on Drain, nodes that vanish without one, and
// nodes spread over a NATS cluster; §5 SHUTTING_DOWN, NODE_UNAVAILABLE,
// OVERLOADED and PAYLOAD_TOO_LARGE.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
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

func TestRegisterAndUnregisterWhileRunning(t *testing.T) {
	srv := testcluster.Server(t)
	url := srv.ClientURL()
	n1 := testcluster.Node(t, url, testcluster.NodeConfig(t, "n1"), nil)
	n2 := testcluster.Node(t, url, testcluster.NodeConfig(t, "n2"), nil)
	c := testcluster.Client(t, url, client.Config{})
	nf := testcluster.Client(t, url, client.Config{NoFollow: true})
	testcluster.WaitForRoute(t, c.Table(), "echo", nil, "n1", "n2")
	testcluster.WaitForRoute(t, n1.Table(), "echo", nil, "n1", "n2")
	ctx := testwait.Ctx(t)
	p, _ := c.Table().Get("n2")
	v0 := p.Hello.Version

	_, err := c.Call(ctx, "late", nil)
	require.ErrorIs(t, err, schema.ErrNoRoute)

	start := time.Now()
	require.NoError(t, n2.Register("late", func(s string) string { return "late " + s }))
	testcluster.WaitForRoute(t, c.Table(), "late", nil, "n2")
	testcluster.WaitForRoute(t, n1.Table(), "late", nil, "n2")
	require.Less(t, time.Since(start), 5*100*time.Millisecond, "within a few heartbeats (a hello goes out at once)")
	p, _ = c.Table().Get("n2")
	v1 := p.Hello.Version
	require.Greater(t, v1, v0, "hello version increases on Register")

	s, err := client.CallAs[string](ctx, c, "late", []any{"direct"})
	require.NoError(t, err)
	require.Equal(t, "late direct", s)
	for range 5 { // through rpc, whichever node plans
		s, err = client.CallAs[string](ctx, nf, "late", []any{"rpc"})
		require.NoError(t, err)
		require.Equal(t, "late rpc", s)
	}

	require.True(t, n2.Unregister("late"))
	require.False(t, n2.Unregister("late"), "already gone")
	testcluster.WaitForNoRoute(t, c.Table(), "late", nil)
	testcluster.WaitForNoRoute(t, n1.Table(), "late", nil)
	p, _ = c.Table().Get("n2")
	require.Greater(t, p.Hello.Version, v1, "hello version increases on Unregister")
	_, err = c.Call(ctx, "late", nil)
	require.ErrorIs(t, err, schema.ErrNoRoute)
	_, err = nf.Call(ctx, "late", nil)
	require.ErrorIs(t, err, schema.ErrNoRoute)
}

// TestDrainSaysGoodbye: peers stop routing to a draining node at once, its
// in-flight step completes and replies, and new work there gets
// SHUTTING_DOWN.
func TestDrainSaysGoodbye(t *testing.T) {
	srv := testcluster.Server(t)
	url := srv.ClientURL()
	b := newBlocker()
	defer b.Release()
	n1 := testcluster.Node(t, url, testcluster.NodeConfig(t, "n1"), nil)
	n2 := testcluster.Node(t, url, testcluster.NodeConfig(t, "n2"), func(n *node.Node) {
		require.NoError(t, n.Register("slow", b.Fn))
	})
	c := testcluster.Client(t, url, client.Config{})
	nc := testcluster.Conn(t, url)
	testcluster.WaitForRoute(t, c.Table(), "slow", nil, "n2")
	testcluster.WaitForRoute(t, n1.Table(), "echo", nil, "n1", "n2")

	type result struct {
		v   string
		err error
	}
	inflight := make(chan result, 1)
	go func() {
		v, err := client.CallAs[string](context.Background(), c, "slow", []any{"in flight"}, client.WithTimeout(bound))
		inflight <- result{v, err}
	}()
	require.Equal(t, "in flight", testwait.Recv(t, b.started, "the step to start on n2"))

	drained := make(chan error, 1)
	go func() { drained <- n2.Drain(context.Background()) }()

	testcluster.WaitForGone(t, c.Table(), "n2")
	testcluster.WaitForGone(t, n1.Table(), "n2")
	require.Equal(t, []string{"n1"}, c.Table().Eligible("echo", nil))
	require.Equal(t, []string{"n1"}, n1.Table().Eligible("echo", nil))
	// A peer that joins now does not learn of the draining node: not from
	// the sync, and not from its heartbeats (which go on, so that its
	// callers do not declare its steps lost).
	beats, err := nc.SubscribeSync("mpreg.default.gossip.heartbeat")
	require.NoError(t, err)
	fresh := testcluster.Client(t, url, client.Config{})
	for seen := 0; seen < 2; {
		m, err := beats.NextMsg(bound)
		require.NoError(t, err, "n2 heartbeats while draining")
		if strings.Contains(string(m.Data), `"n2"`) {
			seen++
		}
	}
	_, known := fresh.Table().Get("n2")
	require.False(t, known, "a draining node is not announced to a new peer")
	// A process starting under its id while it drains is refused: both
	// would hear n2's exec subject.
	successor, err := node.New(testcluster.Conn(t, url), testcluster.NodeConfig(t, "n2"))
	require.NoError(t, err)
	require.ErrorIs(t, successor.Start(testwait.Ctx(t)), node.ErrNodeIDInUse)
	for i := range 5 {
		v, err := c.Call(testwait.Ctx(t), "echo", []any{i})
		require.NoError(t, err)
		require.Equal(t, int64(i), v)
	}
	_, err = c.Call(testwait.Ctx(t), "slow", []any{"new"})
	require.ErrorIs(t, err, schema.ErrNoRoute, "nothing new is routed to a node that said goodbye")

	// A caller that sends there anyway is told the node is draining.
	resp := execJSON(t, nc, "n2", map[string]any{"cluster": "default", "id": "r/s", "fun": "slow", "args": []any{"x"}, "kwargs": map[string]any{}})
	require.Equal(t, "SHUTTING_DOWN", wireError(t, resp)["code"])
	select {
	case err := <-drained:
		t.Fatalf("Drain returned with a step in flight: %v", err)
	default:
	}

	b.Release()
	r := testwait.Recv(t, inflight, "the in-flight call")
	require.NoError(t, r.err)
	require.Equal(t, "in flight", r.v)
	require.NoError(t, testwait.Recv(t, drained, "Drain"))
	testwait.Recv(t, n2.Done(), "n2 to be done")
	require.NoError(t, n2.Drain(context.Background()), "Drain is idempotent")
	n2.Close()
}

// TestDrainWhileCutOff: a node cut off from NATS drains in moments, not at
// the NATS flush and drain timeouts.
func TestDrainWhileCutOff(t *testing.T) {
	srv := testcluster.Server(t)
	nc := testcluster.Conn(t, srv.ClientURL())
	n := testcluster.StartNode(t, nc, testcluster.NodeConfig(t, "n1"), nil)
	srv.Shutdown()
	testcluster.WaitFor(t, "the node to see NATS gone", func() error {
		if nc.IsConnected() {
			return errors.New("still connected")
		}
		return nil
	})
	start := time.Now()
	require.NoError(t, n.Drain(testwait.Ctx(t)))
	require.Less(t, time.Since(start), 2*time.Second)
	testwait.Recv(t, n.Done(), "the node to be done")
}

// TestVanishedNode: a node that disappears without goodbye gets "no
// responders"; the step is retried on another eligible node, or fails with
// NODE_UNAVAILABLE when there is none, and never hangs.
func TestVanishedNode(t *testing.T) {
	t.Run("retried elsewhere", func(t *testing.T) {
		srv := testcluster.Server(t)
		url := srv.ClientURL()
		b := newBlocker()
		defer b.Release()
		n1 := testcluster.Node(t, url, testcluster.NodeConfig(t, "n1"), nil)
		n2 := testcluster.Node(t, url, testcluster.NodeConfig(t, "n2"), func(n *node.Node) {
			require.NoError(t, n.Register("work", whoami(n.ID())))
		})
		testcluster.Node(t, url, testcluster.NodeConfig(t, "n3"), func(n *node.Node) {
			require.NoError(t, n.Register("work", whoami(n.ID())))
			require.NoError(t, n.Register("hold", b.Fn))
		})
		c := testcluster.Client(t, url, client.Config{})
		testcluster.WaitForRoute(t, c.Table(), "work", nil, "n2", "n3")
		testcluster.WaitForRoute(t, c.Table(), "hold", nil, "n3")

		// Keep n3 busy so that n2 is the least loaded choice for "work".
		held := make(chan error, 1)
		go func() {
			_, err := c.Call(context.Background(), "hold", []any{"h"}, client.WithTimeout(bound))
			held <- err
		}()
		testwait.Recv(t, b.started, "hold to start on n3")

		n2.Close() // no goodbye: its subscriptions just go away
		p, ok := c.Table().Get("n2")
		require.True(t, ok)
		require.True(t, p.Alive, "the client has not noticed yet")

		start := time.Now()
		who, err := client.CallAs[string](testwait.Ctx(t), c, "work", nil)
		require.NoError(t, err)
		require.Equal(t, "n3", who, "retried on the other eligible node")
		require.Less(t, time.Since(start), 2*time.Second)
		p, ok = c.Table().Get("n2")
		require.True(t, ok)
		require.False(t, p.Alive, "no responders marks the node dead at once")
		require.Equal(t, []string{"n3"}, c.Table().Eligible("work", nil))

		// Nodes notice the silence after dead-after (3 heartbeats).
		testcluster.WaitForRoute(t, n1.Table(), "work", nil, "n3")
		testcluster.WaitFor(t, "n1 to see n2 dead", func() error {
			if el := n1.Table().Eligible("work", nil); len(el) != 1 {
				return fmt.Errorf("eligible %v", el)
			}
			return nil
		})
		b.Release()
		require.NoError(t, testwait.Recv(t, held, "hold"))
	})

	t.Run("no other node", func(t *testing.T) {
		srv := testcluster.Server(t)
		url := srv.ClientURL()
		testcluster.Node(t, url, testcluster.NodeConfig(t, "n1"), nil)
		lone := testcluster.Conn(t, "", testcluster.WithConnConfig(bus.ConnConfig{Servers: []string{url}}))
		testcluster.StartNode(t, lone, testcluster.NodeConfig(t, "solo"), func(n *node.Node) {
			require.NoError(t, n.Register("only", func() string { return "here" }))
		})
		c := testcluster.Client(t, url, client.Config{})
		testcluster.WaitForRoute(t, c.Table(), "only", nil, "solo")
		v, err := c.Call(testwait.Ctx(t), "only", nil)
		require.NoError(t, err)
		require.Equal(t, "here", v)

		clients := srv.NATS().NumClients()
		lone.Close() // the node's connection drops: it vanishes from the bus
		testcluster.WaitFor(t, "the server to drop the node's connection", func() error {
			if n := srv.NATS().NumClients(); n >= clients {
				return fmt.Errorf("%d clients", n)
			}
			return nil
		})
		start := time.Now()
		_, err = c.Call(testwait.Ctx(t), "only", nil, client.WithTimeout(5*time.Second))
		require.Error(t, err)
		require.True(t, errors.Is(err, schema.ErrNodeUnavailable) || errors.Is(err, schema.ErrNoRoute), "got %v", err)
		require.Less(t, time.Since(start), 2*time.Second, "no hang")
	})

	t.Run("lost while running the step", func(t *testing.T) {
		srv := testcluster.Server(t)
		url := srv.ClientURL()
		b := newBlocker()
		defer b.Release()
		lone := testcluster.Conn(t, "", testcluster.WithConnConfig(bus.ConnConfig{Servers: []string{url}}))
		testcluster.StartNode(t, lone, testcluster.NodeConfig(t, "solo"), func(n *node.Node) {
			require.NoError(t, n.Register("hold", b.Fn))
		})
		c := testcluster.Client(t, url, client.Config{})
		testcluster.WaitForRoute(t, c.Table(), "hold", nil, "solo")

		out := make(chan error, 1)
		start := time.Now()
		go func() {
			_, err := c.Call(context.Background(), "hold", []any{"h"}, client.WithTimeout(bound))
			out <- err
		}()
		testwait.Recv(t, b.started, "the step to start")
		lone.Close() // the reply can never come
		err := testwait.Recv(t, out, "the call to fail")
		requireCode(t, err, schema.CodeNodeUnavailable)
		require.Less(t, time.Since(start), bound/2, "bounded by the dead-after period, not the call's timeout")
	})
}

// TestMultiServer: nodes on different servers of a NATS cluster serve one
// request that enters at server A.
func TestMultiServer(t *testing.T) {
	servers := testcluster.Cluster(t, 3)
	a, cURL := servers[0].ClientURL(), servers[2].ClientURL()
	na := testcluster.Node(t, a, testcluster.NodeConfig(t, "na"), func(n *node.Node) {
		require.NoError(t, n.Register("where", whoami(n.ID()), node.WithLocs("on-a")))
	})
	nb := testcluster.Node(t, servers[1].ClientURL(), testcluster.NodeConfig(t, "nb"), nil)
	nc3 := testcluster.Node(t, cURL, testcluster.NodeConfig(t, "nc"), func(n *node.Node) {
		require.NoError(t, n.Register("where", whoami(n.ID()), node.WithLocs("on-c")))
	})
	for _, n := range []*node.Node{na, nb, nc3} {
		testcluster.WaitForRoute(t, n.Table(), "where", []string{"on-c"}, "nc")
		testcluster.WaitForRoute(t, n.Table(), "where", []string{"on-a"}, "na")
	}
	caller := testcluster.Conn(t, a)
	for i := range 5 {
		resp := rpcJSON(t, caller, fmt.Sprintf(`{"id": "ms-%d", "cmds": [
			{"name": "c", "fun": "where", "locs": ["on-c"]},
			{"name": "a", "fun": "where", "locs": ["on-a"]},
			{"name": "both", "fun": "echos", "args": ["a", "c"]}]}`, i))
		require.Nil(t, resp["error"], "%v", resp)
		require.Equal(t, map[string]any{"both": []any{"na", "nc"}}, resp["results"])
	}
	require.Positive(t, nc3.Stats().Steps, "a step ran on the node behind server C")
}

func TestPayloadTooLarge(t *testing.T) {
	srv := testcluster.Server(t, testcluster.WithServerConfig(bus.ServerConfig{MaxPayload: 4096}))
	url := srv.ClientURL()
	big := func(n int64) string { return strings.Repeat("x", int(n)) }
	n1 := testcluster.Node(t, url, testcluster.NodeConfig(t, "n1"), func(n *node.Node) {
		require.NoError(t, n.Register("big", big, node.WithLocs("here")))
		require.NoError(t, n.Register("size", func(s string) int { return len(s) }, node.WithLocs("here")))
	})
	testcluster.Node(t, url, testcluster.NodeConfig(t, "n2"), func(n *node.Node) {
		require.NoError(t, n.Register("big", big, node.WithLocs("there")))
	})
	testcluster.WaitForRoute(t, n1.Table(), "big", []string{"there"}, "n2")
	nc := testcluster.Conn(t, url)

	// The value crosses between n1 and n2 whichever node plans: as an exec
	// reply (step b) or as an exec request's arguments (step len; the
	// partial result b then makes the response itself too large, and the
	// response-level error replaces the step's).
	for range 4 {
		resp := rpcJSON(t, nc, `{"cmds": [{"name": "b", "fun": "big", "args": [8000], "locs": ["there"]},
			{"name": "len", "fun": "size", "args": ["b"], "locs": ["here"]}]}`)
		e := wireError(t, resp)
		require.Equal(t, "PAYLOAD_TOO_LARGE", e["code"], "%v", e)
		require.Contains(t, []any{"b", "len", nil}, e["step"], "%v", e)
		require.Equal(t, int64(4096), details(t, e)["max"])
	}
	// A response too large for the rpc reply (or the exec reply, when n2
	// plans).
	for range 4 {
		resp := rpcJSON(t, nc, `{"cmds": [{"name": "b", "fun": "big", "args": [8000], "locs": ["here"]}]}`)
		require.Equal(t, "PAYLOAD_TOO_LARGE", wireError(t, resp)["code"])
	}
	resp := rpcJSON(t, nc, `{"cmds": [{"name": "b", "fun": "big", "args": [3000], "locs": ["there"]},
		{"name": "len", "fun": "size", "args": ["b"], "locs": ["here"]}]}`)
	require.Equal(t, map[string]any{"len": int64(3000)}, resp["results"])
	// Small enough passes.
	resp = rpcJSON(t, nc, `{"cmds": [{"name": "b", "fun": "big", "args": [100], "locs": ["there"]}]}`)
	require.Equal(t, map[string]any{"b": big(100)}, resp["results"])
}

// TestOverloaded: past MaxInflight running and MaxQueue waiting, a step gets
// OVERLOADED.
func TestOverloaded(t *testing.T) {
	srv := testcluster.Server(t)
	b := newBlocker()
	defer b.Release()
	cfg := testcluster.NodeConfig(t, "n1")
	cfg.Limits.MaxInflight, cfg.Limits.MaxQueue = 1, 1
	testcluster.Node(t, srv.ClientURL(), cfg, func(n *node.Node) {
		require.NoError(t, n.Register("block", b.Fn))
	})
	c := testcluster.Client(t, srv.ClientURL(), client.Config{})
	nc := testcluster.Conn(t, srv.ClientURL())
	var replies []<-chan *nats.Msg
	for _, tag := range []string{"run", "queue"} {
		replies = append(replies, execAsync(t, nc, "n1", map[string]any{"cluster": "default", "id": "r/" + tag, "fun": "block", "args": []any{tag}, "kwargs": map[string]any{}}))
	}
	testwait.Recv(t, b.started, "the first step to run")
	waitForInflight(t, c.Table(), "n1", 2) // the second step queued
	resp := execJSON(t, nc, "n1", map[string]any{"cluster": "default", "id": "r/over", "fun": "block", "args": []any{"over"}, "kwargs": map[string]any{}})
	require.Equal(t, "OVERLOADED", wireError(t, resp)["code"])

	b.Release()
	for _, ch := range replies {
		m := testwait.Recv(t, ch, "a queued reply")
		require.NotNil(t, m)
		r := decodeAs(t, m, codec.JSONType)
		require.Contains(t, []any{"run", "queue"}, r["result"])
	}
}

// TestRestartNewIncarnation: a node that comes back under the same id with
// a later incarnation replaces its old entry, and is routed to again.
func TestRestartNewIncarnation(t *testing.T) {
	srv := testcluster.Server(t)
	url := srv.ClientURL()
	testcluster.Node(t, url, testcluster.NodeConfig(t, "n1"), nil)
	first := testcluster.Node(t, url, testcluster.NodeConfig(t, "n2"), func(n *node.Node) {
		require.NoError(t, n.Register("gen", func() string { return "first" }))
	})
	c := testcluster.Client(t, url, client.Config{})
	testcluster.WaitForRoute(t, c.Table(), "gen", nil, "n2")
	p, _ := c.Table().Get("n2")
	inc1 := p.Hello.Incarnation

	first.Close() // no goodbye
	start := time.Now()
	testcluster.WaitFor(t, "a later start time", func() error {
		if time.Now().UnixMilli() <= inc1 {
			return errors.New("same millisecond")
		}
		return nil
	})
	testcluster.Node(t, url, testcluster.NodeConfig(t, "n2"), func(n *node.Node) {
		require.NoError(t, n.Register("gen", func() string { return "second" }))
	})
	testcluster.WaitFor(t, "the new incarnation", func() error {
		if p, _ := c.Table().Get("n2"); p.Hello.Incarnation <= inc1 || !p.Alive {
			return fmt.Errorf("incarnation %d alive %v", p.Hello.Incarnation, p.Alive)
		}
		return nil
	})
	require.Less(t, time.Since(start), 5*time.Second)
	v, err := c.Call(testwait.Ctx(t), "gen", nil)
	require.NoError(t, err)
	require.Equal(t, "second", v)
}

// TestNodeIDInUse: a second process that starts under the id of a live
// node is refused before it announces anything, and the live node keeps its
// routing; once the first is gone the id may be used again.
func TestNodeIDInUse(t *testing.T) {
	srv := testcluster.Server(t)
	url := srv.ClientURL()
	first := testcluster.Node(t, url, testcluster.NodeConfig(t, "n1"), func(n *node.Node) {
		require.NoError(t, n.Register("gen", func() string { return "first" }))
	})
	c := testcluster.Client(t, url, client.Config{})
	testcluster.WaitForRoute(t, c.Table(), "gen", nil, "n1")

	twin, err := node.New(testcluster.Conn(t, url), testcluster.NodeConfig(t, "n1"))
	require.NoError(t, err)
	require.NoError(t, twin.Register("gen", func() string { return "twin" }))
	err = twin.Start(testwait.Ctx(t))
	require.ErrorIs(t, err, node.ErrNodeIDInUse)
	require.Contains(t, err.Error(), `"n1"`)
	testwait.Recv(t, twin.Done(), "the refused node to be closed")
	for range 3 {
		v, err := c.Call(testwait.Ctx(t), "gen", nil)
		require.NoError(t, err)
		require.Equal(t, "first", v, "the live node keeps its id")
	}

	first.Close()
	testcluster.Node(t, url, testcluster.NodeConfig(t, "n1"), func(n *node.Node) {
		require.NoError(t, n.Register("gen", func() string { return "second" }))
	})
	testcluster.WaitFor(t, "the new process to serve", func() error {
		v, err := c.Call(testwait.Ctx(t), "gen", nil)
		if err != nil || v != "second" {
			return fmt.Errorf("got %v: %w", v, err)
		}
		return nil
	})
}

// TestRestartLosesOldSteps: a step running in a process that died is lost
// as soon as a new process under the same id announces itself, long before
// the old one would be declared dead of silence.
func TestRestartLosesOldSteps(t *testing.T) {
	f := testcluster.NewFixture(t)
	b := newBlocker()
	defer b.Release()
	f.AddNode("n2", func(n *node.Node) { require.NoError(t, n.Register("slow", b.Fn)) })
	c := testcluster.Client(t, f.Server.ClientURL(), client.Config{DeadAfter: time.Minute})
	testcluster.WaitForRoute(t, c.Table(), "slow", nil, "n2")
	done := make(chan error, 1)
	go func() {
		_, err := c.Call(context.Background(), "slow", []any{"old"}, client.WithTimeout(time.Minute))
		done <- err
	}()
	testwait.Recv(t, b.started, "the step to start")
	sent := time.Now()

	f.StopNode("n2") // the process dies: no goodbye, no reply
	// The new process starts more than the allowance for clock skew
	// (250 ms) after the step was sent, as a restarted process does.
	testcluster.WaitFor(t, "a start time clear of the step", func() error {
		if time.Since(sent) <= 300*time.Millisecond {
			return errors.New("too soon")
		}
		return nil
	})
	start := time.Now()
	f.RestartNode("n2")
	err := testwait.Recv(t, done, "the call to end")
	e := requireCode(t, err, schema.CodeNodeUnavailable)
	require.Contains(t, e.Message, "lost while running")
	require.Less(t, time.Since(start), 5*time.Second)
	f.WaitForFunction("slow")
}

// TestPlannerLost: a request whose planner node dies ends with
// NODE_UNAVAILABLE naming the planner as soon as the client's checks find it
// gone, not with TIMEOUT at its budget; while the planner lives, the checks
// change nothing.
func TestPlannerLost(t *testing.T) {
	// A client that does not follow asks the planner's info subject; one
	// that follows has its membership view declare the planner dead.
	for _, follow := range []bool{false, true} {
		t.Run(fmt.Sprintf("follow=%v", follow), func(t *testing.T) { plannerLost(t, follow) })
	}
}

func plannerLost(t *testing.T, follow bool) {
	srv := testcluster.Server(t)
	url := srv.ClientURL()
	b := newBlocker()
	defer b.Release()
	cfg := testcluster.NodeConfig(t, "n1")
	cfg.PlannerAckAfter = -1
	nc := testcluster.Conn(t, url)
	testcluster.StartNode(t, nc, cfg, func(n *node.Node) {
		require.NoError(t, n.Register("block", b.Fn))
		require.NoError(t, n.Register("pause", func(ctx context.Context, ms int) error {
			select {
			case <-time.After(time.Duration(ms) * time.Millisecond): // the work itself
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}))
	})
	cc := client.Config{NoFollow: !follow, PlannerCheck: 20 * time.Millisecond, DeadAfter: 100 * time.Millisecond}
	if follow {
		cc.DeadAfter = 300 * time.Millisecond // 3 heartbeats of the node
	}
	c := testcluster.Client(t, url, cc)

	resp, err := c.Run(testwait.Ctx(t), &schema.Request{Cmds: []schema.Command{
		{Name: "p", Fun: "pause", Args: []any{200}}, {Name: "e", Fun: "echo", Args: []any{"p"}}}})
	require.NoError(t, err, "a live planner is checked ten times and kept")
	require.Equal(t, map[string]any{"e": nil}, resp.Results)

	done := make(chan error, 1)
	go func() {
		_, err := c.Run(context.Background(), &schema.Request{Cmds: []schema.Command{{Name: "b", Fun: "block", Args: []any{"x"}}}, TimeoutMS: 60_000})
		done <- err
	}()
	testwait.Recv(t, b.started, "the step to start")
	start := time.Now()
	nc.Close() // the planner's process is gone
	e := requireCode(t, testwait.Recv(t, done, "the request to end"), schema.CodeNodeUnavailable)
	require.Equal(t, "n1", e.Node)
	require.Contains(t, e.Message, "planner node n1")
	require.Equal(t, "n1", detail(t, e, "planner"))
	require.Less(t, time.Since(start), 5*time.Second)
}

// blipDialer dials TCP and can cut its connections and refuse to dial for
// a while, as a network blip between a node and its NATS server would.
type blipDialer struct {
	mu    sync.Mutex
	until time.Time
	conns []net.Conn
}

func (d *blipDialer) Dial(network, address string) (net.Conn, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if time.Now().Before(d.until) {
		return nil, errors.New("blip: network down")
	}
	c, err := (&net.Dialer{Timeout: time.Second}).Dial(network, address)
	if err == nil {
		d.conns = append(d.conns, c)
	}
	return c, err
}

func (d *blipDialer) cut(down time.Duration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.until = time.Now().Add(down)
	for _, c := range d.conns {
		_ = c.Close()
	}
	d.conns = nil
}

// TestPlannerSurvivesBlip: a planner that is away from NATS for less than
// the client's dead-after (its subscriptions gone, "no responders" on many
// checks in a row) is not declared lost, and its reply arrives.
func TestPlannerSurvivesBlip(t *testing.T) {
	srv := testcluster.Server(t)
	url := srv.ClientURL()
	cfg := testcluster.NodeConfig(t, "n1")
	cfg.PlannerAckAfter = -1
	dial := &blipDialer{}
	nc := testcluster.Conn(t, "", testcluster.WithConnConfig(bus.ConnConfig{Servers: []string{url}, ReconnectWait: 20 * time.Millisecond,
		Options: []nats.Option{nats.SetCustomDialer(dial)}}))
	started := make(chan struct{}, 1)
	release := make(chan struct{})
	testcluster.StartNode(t, nc, cfg, func(n *node.Node) {
		require.NoError(t, n.Register("wait", func(ctx context.Context) (string, error) {
			started <- struct{}{}
			select {
			case <-release:
				return "done", nil
			case <-ctx.Done():
				return "", ctx.Err()
			}
		}))
	})
	c := testcluster.Client(t, url, client.Config{NoFollow: true, PlannerCheck: 20 * time.Millisecond, DeadAfter: 5 * time.Second})
	done := make(chan error, 1)
	var resp *schema.Response
	go func() {
		var err error
		resp, err = c.Run(context.Background(), &schema.Request{Cmds: []schema.Command{{Name: "w", Fun: "wait"}}, TimeoutMS: 30_000})
		done <- err
	}()
	testwait.Recv(t, started, "the step to start")
	// The ack is out of the planner's buffer and through the client's
	// connection before the blip.
	require.NoError(t, nc.Flush())
	require.NoError(t, c.Conn().Flush())
	dial.cut(500 * time.Millisecond) // about 25 checks find no responders
	testcluster.WaitFor(t, "the planner to reconnect", func() error {
		if !nc.IsConnected() || nc.Stats().Reconnects == 0 {
			return errors.New(nc.Status().String())
		}
		return nil
	})
	close(release)
	require.NoError(t, testwait.Recv(t, done, "the request to end"))
	require.Equal(t, map[string]any{"w": "done"}, resp.Results)
}

// TestPlannerAckSubject: the ack goes to the subject the caller names,
// with the planner's id, but never to one of MPREG's own subjects (a
// goodbye in the planner's name would make every peer stop routing to it).
func TestPlannerAckSubject(t *testing.T) {
	srv := testcluster.Server(t)
	cfg := testcluster.NodeConfig(t, "n1")
	cfg.PlannerAckAfter = -1
	n := testcluster.Node(t, srv.ClientURL(), cfg, nil)
	nc := testcluster.Conn(t, srv.ClientURL())
	acks, err := nc.SubscribeSync("caller.acks")
	require.NoError(t, err)
	gossip, err := nc.SubscribeSync("mpreg.default.gossip.goodbye")
	require.NoError(t, err)
	require.NoError(t, nc.Flush())
	send := func(ack string) map[string]any {
		hdr := jsonHeader()
		hdr.Set(schema.HeaderPlannerAck, ack)
		return decodeAs(t, request(t, nc, rpcSubject, []byte(`{"id": "r1", "cmds": [{"name": "a", "fun": "echo", "args": [1]}]}`), hdr), codec.JSONType)
	}

	require.Equal(t, map[string]any{"a": int64(1)}, send("caller.acks")["results"])
	m, err := acks.NextMsg(bound)
	require.NoError(t, err)
	self, _ := n.Table().Get("n1")
	require.JSONEq(t, fmt.Sprintf(`{"cluster": "default", "id": "r1", "planner": "n1", "incarnation": %d, "instance": %q}`, self.Hello.Incarnation, self.Hello.Instance), string(m.Data))

	for _, bad := range []string{"mpreg.default.gossip.goodbye", "mpreg", "caller.*", "caller. acks"} {
		require.Equal(t, map[string]any{"a": int64(1)}, send(bad)["results"], "the request is served all the same")
	}
	require.NoError(t, nc.Flush())
	pending, _, err := gossip.Pending()
	require.NoError(t, err)
	require.Zero(t, pending, "no ack published on a gossip subject")
	pending, _, err = acks.Pending()
	require.NoError(t, err)
	require.Zero(t, pending)
}

// TestTooManyRequests: past MaxRequests whole requests being planned, a new
// rpc request is answered OVERLOADED at once, and served again afterwards.
func TestTooManyRequests(t *testing.T) {
	srv := testcluster.Server(t)
	b := newBlocker()
	defer b.Release()
	cfg := testcluster.NodeConfig(t, "n1")
	cfg.Limits.MaxRequests = 1
	testcluster.Node(t, srv.ClientURL(), cfg, func(n *node.Node) {
		require.NoError(t, n.Register("block", b.Fn))
	})
	nc := testcluster.Conn(t, srv.ClientURL())
	first := make(chan *nats.Msg, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), bound)
		defer cancel()
		r, _ := nc.RequestMsgWithContext(ctx, &nats.Msg{Subject: rpcSubject,
			Data: []byte(`{"cmds": [{"name": "a", "fun": "block", "args": ["held"]}]}`)})
		first <- r
	}()
	testwait.Recv(t, b.started, "the first request's step to run")

	resp := rpcJSON(t, nc, `{"cmds": [{"name": "b", "fun": "echo", "args": [1]}]}`)
	require.Equal(t, "OVERLOADED", wireError(t, resp)["code"])

	b.Release()
	m := testwait.Recv(t, first, "the first request's reply")
	require.NotNil(t, m)
	require.Equal(t, map[string]any{"a": "held"}, decodeAs(t, m, codec.JSONType)["results"])
	resp = rpcJSON(t, nc, `{"cmds": [{"name": "b", "fun": "echo", "args": [1]}]}`)
	require.Equal(t, map[string]any{"b": int64(1)}, resp["results"])
}

// TestDrainAnswersHeldRequests: 16 rpc requests held in a function when
// the node starts draining are let go together, and each gets its reply
// before Drain returns (replies that share writes are not left behind
// when the connection drains).
func TestDrainAnswersHeldRequests(t *testing.T) {
	const held = 16
	srv := testcluster.Server(t)
	url := srv.ClientURL()
	b := newBlocker()
	defer b.Release()
	n := testcluster.Node(t, url, testcluster.NodeConfig(t, "d"), func(n *node.Node) {
		require.NoError(t, n.Register("slow", b.Fn))
	})
	c := testcluster.Client(t, url, client.Config{})
	testcluster.WaitForRoute(t, c.Table(), "slow", nil, "d")
	nc := testcluster.Conn(t, url)
	ctx := testwait.Ctx(t)
	replies := make(chan map[string]any, held)
	for i := range held {
		go func() {
			body := fmt.Sprintf(`{"id": "h%d", "cmds": [{"name": "x", "fun": "slow", "args": ["t%d"]}]}`, i, i)
			m, err := nc.RequestMsgWithContext(ctx, &nats.Msg{Subject: "mpreg.default.node.d.rpc", Data: []byte(body), Header: jsonHeader()})
			var resp map[string]any
			if err == nil {
				if tree, derr := codec.JSON.Decode(m.Data); derr == nil {
					resp, _ = tree.(map[string]any)
				}
			}
			replies <- resp
		}()
	}
	for range held {
		testwait.Recv(t, b.started, "a request in the function")
	}
	drained := make(chan error, 1)
	go func() { drained <- n.Drain(context.Background()) }()
	testcluster.WaitForGone(t, c.Table(), "d")
	b.Release()
	seen := map[string]bool{}
	for range held {
		resp := testwait.Recv(t, replies, "a held request's reply")
		require.NotNil(t, resp, "a held request got no reply")
		require.Nil(t, resp["error"], "%v", resp)
		id, _ := resp["id"].(string)
		require.Equal(t, map[string]any{"x": "t" + strings.TrimPrefix(id, "h")}, resp["results"])
		seen[id] = true
	}
	require.Len(t, seen, held)
	require.NoError(t, testwait.Recv(t, drained, "Drain"))
}
