package node_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/mpreg/mpreg/codec"
	"github.com/mpreg/mpreg/internal/testcluster"
	"github.com/mpreg/mpreg/internal/testwait"
	"github.com/mpreg/mpreg/node"
)

// A chain pinned to another node goes there in one request: that node
// plans it (one more rpc request there) and runs every step, and the trace
// names it for each.
func TestDelegatedChain(t *testing.T) {
	for _, off := range []bool{false, true} {
		t.Run(fmt.Sprintf("NoDelegate=%v", off), func(t *testing.T) {
			s := testcluster.Server(t)
			cfgA := testcluster.NodeConfig(t, "a", "site-a")
			cfgA.NoDelegate = off
			a := testcluster.Node(t, s.ClientURL(), cfgA, nil)
			b := testcluster.Node(t, s.ClientURL(), testcluster.NodeConfig(t, "b", "site-b"), func(n *node.Node) {
				require.NoError(t, n.Register("inc", func(x int64) int64 { return x + 1 }))
			})
			testcluster.WaitForRoute(t, a.Table(), "inc", []string{"site-b"}, "b")
			nc := testcluster.Conn(t, s.ClientURL())
			before := b.Stats()
			resp := decodeAs(t, request(t, nc, "mpreg.default.node.a.rpc", []byte(`{"id": "d1", "trace": true, "cmds": [
				{"name": "s", "fun": "echo", "args": [1], "locs": ["site-a"]},
				{"name": "i1", "fun": "inc", "args": ["s"], "locs": ["site-b"]},
				{"name": "i2", "fun": "inc", "args": ["i1"], "locs": ["site-b"]},
				{"name": "i3", "fun": "inc", "args": ["i2"], "locs": ["site-b"]},
				{"name": "e", "fun": "echo", "args": ["i3"], "locs": ["site-a"]}]}`), jsonHeader()), codec.JSONType)
			require.Nil(t, resp["error"])
			require.Equal(t, map[string]any{"e": int64(4)}, resp["results"])
			after := b.Stats()
			want := int64(0)
			if !off {
				want = 1
			}
			require.Equal(t, want, after.Requests-before.Requests, "requests b planned")
			require.Equal(t, int64(3), after.Steps-before.Steps, "steps b ran")
			nodes := map[string]string{}
			for _, e := range resp["trace"].([]any) {
				entry := e.(map[string]any)
				nodes[entry["step"].(string)] = entry["node"].(string)
				require.GreaterOrEqual(t, entry["start_us"].(int64), int64(0))
			}
			require.Equal(t, map[string]string{"s": "a", "i1": "b", "i2": "b", "i3": "b", "e": "a"}, nodes)
		})
	}
}

// Cancelling a request stops its delegated steps on the node running them.
func TestDelegatedCancel(t *testing.T) {
	s := testcluster.Server(t)
	a := testcluster.Node(t, s.ClientURL(), testcluster.NodeConfig(t, "a", "site-a"), nil)
	started, stopped := make(chan struct{}, 1), make(chan error, 1)
	testcluster.Node(t, s.ClientURL(), testcluster.NodeConfig(t, "b", "site-b"), func(n *node.Node) {
		require.NoError(t, n.Register("hold", func(ctx context.Context) error {
			started <- struct{}{}
			<-ctx.Done()
			stopped <- ctx.Err()
			return ctx.Err()
		}))
	})
	testcluster.WaitForRoute(t, a.Table(), "hold", []string{"site-b"}, "b")
	nc := testcluster.Conn(t, s.ClientURL())
	replied := make(chan *nats.Msg, 1)
	go func() {
		m, _ := nc.RequestMsg(&nats.Msg{Subject: "mpreg.default.node.a.rpc", Header: jsonHeader(), Data: []byte(`{"id": "held", "cmds": [
			{"name": "h", "fun": "hold", "locs": ["site-b"]},
			{"name": "e", "fun": "echo", "args": ["h"], "locs": ["site-b"]}]}`)}, bound)
		replied <- m
	}()
	testwait.Recv(t, started, "the delegated step to start")
	require.NoError(t, nc.Publish("mpreg.default.cancel", []byte(`{"id": "held"}`)))
	require.ErrorIs(t, testwait.Recv(t, stopped, "the delegated step to see the cancel"), context.Canceled)
	m := testwait.Recv(t, replied, "the reply")
	require.NotNil(t, m)
	require.Equal(t, "CANCELLED", wireError(t, decodeAs(t, m, codec.JSONType))["code"])
}

// A delegated run keeps the request's deadline, and a node lost while it
// runs delegated steps ends the request with NODE_UNAVAILABLE, not at its
// deadline.
func TestDelegatedDeadlineAndLoss(t *testing.T) {
	s := testcluster.Server(t)
	a := testcluster.Node(t, s.ClientURL(), testcluster.NodeConfig(t, "a", "site-a"), nil)
	started := make(chan struct{}, 4)
	hold := func(ctx context.Context) error {
		started <- struct{}{}
		<-ctx.Done()
		return ctx.Err()
	}
	ncB := testcluster.Conn(t, s.ClientURL())
	testcluster.StartNode(t, ncB, testcluster.NodeConfig(t, "b", "site-b"), func(n *node.Node) {
		require.NoError(t, n.Register("hold", hold))
	})
	testcluster.WaitForRoute(t, a.Table(), "hold", []string{"site-b"}, "b")
	nc := testcluster.Conn(t, s.ClientURL())
	body := func(id string, timeoutMS int) []byte {
		return []byte(fmt.Sprintf(`{"id": %q, "timeout_ms": %d, "cmds": [
			{"name": "h", "fun": "hold", "locs": ["site-b"]},
			{"name": "e", "fun": "echo", "args": ["h"], "locs": ["site-b"]}]}`, id, timeoutMS))
	}

	start := time.Now()
	resp := decodeAs(t, request(t, nc, "mpreg.default.node.a.rpc", body("short", 300), jsonHeader()), codec.JSONType)
	took := time.Since(start)
	e := wireError(t, resp)
	require.Equal(t, "TIMEOUT", e["code"])
	require.Equal(t, "h", e["step"])
	require.Less(t, took, 3*time.Second)
	testwait.Recv(t, started, "the first run to start")

	replied := make(chan map[string]any, 1)
	go func() {
		m, err := nc.RequestMsg(&nats.Msg{Subject: "mpreg.default.node.a.rpc", Header: jsonHeader(), Data: body("lost", 60_000)}, bound)
		if err != nil {
			replied <- map[string]any{"transport": err.Error()}
			return
		}
		replied <- decodeAs(t, m, codec.JSONType)
	}()
	testwait.Recv(t, started, "the second run to start")
	start = time.Now()
	ncB.Close() // b is gone without a goodbye: a declares it dead after 3 silent heartbeats
	e = wireError(t, testwait.Recv(t, replied, "the reply"))
	require.Equal(t, "NODE_UNAVAILABLE", e["code"], "%v", e)
	require.Equal(t, "h", e["step"])
	require.Less(t, time.Since(start), 5*time.Second)
}
