package node_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/mpreg/mpreg/client"
	"github.com/mpreg/mpreg/codec"
	"github.com/mpreg/mpreg/internal/testcluster"
	"github.com/mpreg/mpreg/internal/testwait"
	"github.com/mpreg/mpreg/node"
	"github.com/mpreg/mpreg/schema"
)

// TestRouteWait: a step with no eligible node waits up to route_wait_ms:
// it runs when a node registers the function during the wait, and fails
// with NO_ROUTE after the wait when none does.
func TestRouteWait(t *testing.T) {
	s := testcluster.Server(t)
	n := testcluster.Node(t, s.ClientURL(), testcluster.NodeConfig(t, "n1"), nil)
	nc := testcluster.Conn(t, s.ClientURL())

	// Over plain NATS: the function appears while the request waits.
	replies := make(chan map[string]any, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), bound)
		defer cancel()
		m, err := nc.RequestMsgWithContext(ctx, &nats.Msg{Subject: rpcSubject, Header: jsonHeader(),
			Data: []byte(`{"route_wait_ms": 10000, "cmds": [{"name": "l", "fun": "late", "args": [2]}]}`)})
		if err != nil {
			replies <- map[string]any{"transport": err.Error()}
			return
		}
		tree, _ := codec.JSON.Decode(m.Data)
		replies <- tree.(map[string]any)
	}()
	testcluster.WaitFor(t, "the request to be planned and waiting", func() error {
		if n.Stats().Planning != 1 {
			return errors.New("not yet")
		}
		return nil
	})
	require.NoError(t, n.Register("late", func(x int64) int64 { return x * 10 }))
	resp := testwait.Recv(t, replies, "the waiting request's reply")
	require.Nil(t, resp["error"], "%v", resp)
	require.Equal(t, map[string]any{"l": int64(20)}, resp["results"])

	// Through the client: nothing appears, NO_ROUTE after the wait.
	cl := testcluster.Client(t, s.ClientURL(), client.Config{NoFollow: true})
	start := time.Now()
	_, err := cl.Call(context.Background(), "never", nil, client.WithRouteWait(300*time.Millisecond))
	took := time.Since(start)
	e := requireCode(t, err, schema.CodeNoRoute)
	require.GreaterOrEqual(t, took, 300*time.Millisecond)
	require.Less(t, took, 5*time.Second)
	require.EqualValues(t, 300, detail(t, e, "route_wait_ms"))
	waited, _ := detail(t, e, "waited_ms").(int64)
	require.GreaterOrEqual(t, waited, int64(300))
	require.Less(t, waited, int64(5000))
	require.Contains(t, e.Message, fmt.Sprintf("(waited %d ms)", waited))

	// Without route_wait_ms, NO_ROUTE as before: no wait, and it says so.
	_, err = cl.Call(context.Background(), "never", nil)
	e = requireCode(t, err, schema.CodeNoRoute)
	require.NotContains(t, e.Message, "waited")
	require.NotContains(t, e.Details, "route_wait_ms")
}

// fanOutBody is a request of n steps of fun, each waiting up to waitMS for
// a route, within a budget of timeoutMS.
func fanOutBody(n int, fun string, waitMS, timeoutMS int) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, `{"route_wait_ms": %d, "timeout_ms": %d, "cmds": [`, waitMS, timeoutMS)
	for i := range n {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `{"name": "s%d", "fun": %q, "args": [%d]}`, i, fun, i)
	}
	b.WriteString("]}")
	return []byte(b.String())
}

// storm publishes requests copies of body to subject; their replies come
// on the returned channel, all through one subscription.
func storm(t *testing.T, nc *nats.Conn, subject string, requests int, body []byte) <-chan *nats.Msg {
	t.Helper()
	replies := make(chan *nats.Msg, requests)
	inbox := nats.NewInbox()
	sub, err := nc.ChanSubscribe(inbox+".*", replies)
	require.NoError(t, err)
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	for i := range requests {
		require.NoError(t, nc.PublishMsg(&nats.Msg{Subject: subject, Reply: fmt.Sprintf("%s.%d", inbox, i), Data: body, Header: jsonHeader()}))
	}
	return replies
}

// usage is what the process holds: goroutines, and heap and stack bytes
// in use after a collection.
func usage() (goroutines int, bytes uint64) {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return runtime.NumGoroutine(), m.HeapInuse + m.StackInuse
}

// waitForWaiting waits until n's planner holds want steps waiting for a
// route.
func waitForWaiting(t *testing.T, n interface{ Stats() node.Stats }, want int64) {
	t.Helper()
	testcluster.WaitFor(t, fmt.Sprintf("%d steps waiting for a route", want), func() error {
		if got := n.Stats().RouteWaiting; got != want {
			return fmt.Errorf("%d waiting", got)
		}
		return nil
	})
}

// TestRouteWaitStorm: 100 requests of 1,000 steps each, all waiting for a
// function no node offers, cost the planning node at most 2,000 goroutines
// and 200 MiB (no goroutine per waiting step). A node joining with an
// unrelated function wakes none of them; one joining with the function
// some requests wait for wakes those requests only, and they finish.
func TestRouteWaitStorm(t *testing.T) {
	const requests, steps = 100, 1000
	const few, fewSteps = 10, 100 // the requests that a join serves
	s := testcluster.Server(t)
	cfg := testcluster.NodeConfig(t, "n1")
	cfg.Limits.MaxWaiting = requests*steps + few*fewSteps
	cfg.Gossip.DeadAfter = time.Minute // a busy process (-race) may hear heartbeats late
	n := testcluster.Node(t, s.ClientURL(), cfg, nil)
	nc := testcluster.Conn(t, s.ClientURL())

	g0, b0 := usage()
	// Sent to n1's own rpc subject: the nodes that join later plan none.
	n1RPC := "mpreg.default.node.n1.rpc"
	stormReplies := storm(t, nc, n1RPC, requests, fanOutBody(steps, "never", 600_000, 600_000))
	waitForWaiting(t, n, requests*steps)
	g1, b1 := usage()
	t.Logf("%d steps waiting: %+d goroutines, %+.1f MiB", requests*steps, g1-g0, (float64(b1)-float64(b0))/(1<<20))
	require.LessOrEqual(t, g1-g0, 2000, "goroutines added by the storm")
	require.LessOrEqual(t, int64(b1)-int64(b0), int64(200<<20), "heap and stacks added by the storm")
	require.Equal(t, int64(requests), n.Stats().Planning)

	// A node offering something else joins: nobody is woken.
	testcluster.Node(t, s.ClientURL(), testcluster.NodeConfig(t, "other"), func(o *node.Node) {
		require.NoError(t, o.Register("unrelated", func(x int64) int64 { return x }))
	})
	testcluster.WaitForRoute(t, n.Table(), "unrelated", nil, "other")
	require.Zero(t, n.Stats().RouteWakes, "a join of an unrelated function woke waiting requests")

	// Ten more requests wait for "late"; a node offering it joins: those
	// ten are woken, once each, and finish; the storm waits on.
	lateReplies := storm(t, nc, n1RPC, few, fanOutBody(fewSteps, "late", 600_000, 600_000))
	waitForWaiting(t, n, requests*steps+few*fewSteps)
	testcluster.Node(t, s.ClientURL(), testcluster.NodeConfig(t, "late1"), func(o *node.Node) {
		require.NoError(t, o.Register("late", func(x int64) int64 { return x * 10 }))
	})
	for range few {
		m := testwait.Recv(t, lateReplies, "a late request's reply")
		resp := decodeAs(t, m, codec.JSONType)
		require.Nil(t, resp["error"], "%v", resp["error"])
		results := resp["results"].(map[string]any)
		require.Len(t, results, fewSteps)
		require.Equal(t, int64(990), results["s99"])
	}
	require.Equal(t, int64(requests*steps), n.Stats().RouteWaiting, "the storm still waits")
	wakes := n.Stats().RouteWakes
	require.GreaterOrEqual(t, wakes, int64(few))
	require.LessOrEqual(t, wakes, int64(2*few), "only the requests waiting for late were woken")
	select {
	case m := <-stormReplies:
		t.Fatalf("a storm request ended: %s", m.Data)
	default:
	}
}

// TestRouteWaitBudget: a route wait that the request's budget cuts short
// is TIMEOUT, and says how long the step really waited (for one step and
// for several).
func TestRouteWaitBudget(t *testing.T) {
	s := testcluster.Server(t)
	testcluster.Node(t, s.ClientURL(), testcluster.NodeConfig(t, "n1"), nil)
	nc := testcluster.Conn(t, s.ClientURL())
	for _, steps := range []int{1, 3} {
		start := time.Now()
		resp := decodeAs(t, request(t, nc, rpcSubject, fanOutBody(steps, "never", 86_400_000, 1000), jsonHeader()), codec.JSONType)
		took := time.Since(start)
		e := wireError(t, resp)
		require.Equal(t, "TIMEOUT", e["code"], "%v", e)
		d := details(t, e)
		require.EqualValues(t, 86_400_000, d["route_wait_ms"])
		waited, _ := d["waited_ms"].(int64)
		require.GreaterOrEqual(t, waited, int64(900))
		require.LessOrEqual(t, time.Duration(waited)*time.Millisecond, took)
		require.Contains(t, e["message"], fmt.Sprintf("waited %d ms", waited))
		require.NotContains(t, e["message"], "waited 86400000")
		require.Equal(t, "never", d["fun"])
	}
}

// TestMaxWaiting: past Config.MaxWaiting steps waiting for a route, a
// request is answered OVERLOADED naming the limit; the node keeps serving
// and the steps already waiting wait on.
func TestMaxWaiting(t *testing.T) {
	s := testcluster.Server(t)
	cfg := testcluster.NodeConfig(t, "n1")
	cfg.Limits.MaxWaiting = 5
	n := testcluster.Node(t, s.ClientURL(), cfg, nil)
	nc := testcluster.Conn(t, s.ClientURL())

	waiting := storm(t, nc, rpcSubject, 1, fanOutBody(4, "never", 600_000, 600_000))
	waitForWaiting(t, n, 4)
	resp := decodeAs(t, request(t, nc, rpcSubject, fanOutBody(2, "never", 600_000, 600_000), jsonHeader()), codec.JSONType)
	e := wireError(t, resp)
	require.Equal(t, "OVERLOADED", e["code"])
	require.Equal(t, map[string]any{"limit": "max_waiting", "max": int64(5)}, details(t, e))
	require.Equal(t, int64(4), n.Stats().RouteWaiting)

	resp = rpcJSON(t, nc, `{"cmds": [{"name": "a", "fun": "echo", "args": [1]}]}`)
	require.Nil(t, resp["error"])
	select {
	case m := <-waiting:
		t.Fatalf("the waiting request ended: %s", m.Data)
	default:
	}
}
