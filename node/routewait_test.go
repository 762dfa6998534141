package node_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/mpreg/mpreg/client"
	"github.com/mpreg/mpreg/codec"
	"github.com/mpreg/mpreg/internal/testcluster"
	"github.com/mpreg/mpreg/internal/testwait"
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
	require.Contains(t, e.Message, "(waited 300 ms)")

	// Without route_wait_ms, NO_ROUTE as before: no wait, and it says so.
	_, err = cl.Call(context.Background(), "never", nil)
	e = requireCode(t, err, schema.CodeNoRoute)
	require.NotContains(t, e.Message, "waited")
	require.NotContains(t, e.Details, "route_wait_ms")
}
