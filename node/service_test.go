package node_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/stretchr/testify/require"

	"github.com/mpreg/mpreg/client"
	"github.com/mpreg/mpreg/codec"
	"github.com/mpreg/mpreg/internal/testcluster"
	"github.com/mpreg/mpreg/internal/testwait"
	"github.com/mpreg/mpreg/node"
	"github.com/mpreg/mpreg/schema"
)

// gather sends an empty request on subject and decodes the first want
// replies into T.
func gather[T any](t *testing.T, nc *nats.Conn, subject string, want int) []T {
	t.Helper()
	inbox := nc.NewInbox()
	ch := make(chan *nats.Msg, 16)
	sub, err := nc.ChanSubscribe(inbox, ch)
	require.NoError(t, err)
	defer func() { _ = sub.Unsubscribe() }()
	require.NoError(t, nc.PublishRequest(subject, inbox, nil))
	out := make([]T, want)
	for i := range out {
		m := testwait.Recv(t, ch, "a reply on "+subject)
		require.NoError(t, json.Unmarshal(m.Data, &out[i]), "%s", m.Data)
	}
	return out
}

// TestServiceDiscovery: every node answers the NATS service protocol
// (ADR-32) as service "mpreg" with its node id; INFO names the rpc and
// exec endpoints; STATS counts what they served.
func TestServiceDiscovery(t *testing.T) {
	s := testcluster.Server(t)
	testcluster.Node(t, s.ClientURL(), testcluster.NodeConfig(t, "n1", "cpu"), nil)
	testcluster.Node(t, s.ClientURL(), testcluster.NodeConfig(t, "n2", "gpu"), func(n *node.Node) {
		require.NoError(t, n.Register("fail", func() error { return context.Canceled }))
	})
	nc := testcluster.Conn(t, s.ClientURL())

	pings := gather[micro.Ping](t, nc, "$SRV.PING.mpreg", 2)
	ids := []string{pings[0].ID, pings[1].ID}
	require.ElementsMatch(t, []string{"n1", "n2"}, ids)
	for _, p := range pings {
		require.Equal(t, micro.PingResponseType, p.Type)
		require.Equal(t, "mpreg", p.Name)
		require.Equal(t, node.Version, p.Version)
		require.Equal(t, "default", p.Metadata["cluster"])
	}
	require.Len(t, gather[micro.Ping](t, nc, "$SRV.PING", 2), 2)

	info := gather[micro.Info](t, nc, "$SRV.INFO.mpreg.n2", 1)[0]
	require.Equal(t, micro.InfoResponseType, info.Type)
	require.Equal(t, "n2", info.Metadata["node"])
	require.Equal(t, "gpu", info.Metadata["locs"])
	require.Equal(t, "echo,echos,fail", info.Metadata["functions"])
	require.Equal(t, []micro.EndpointInfo{
		{Name: "rpc", Subject: "mpreg.default.rpc", QueueGroup: "mpreg", Metadata: map[string]string{"protocol": "docs/PROTOCOL.md §4"}},
		{Name: "node-rpc", Subject: "mpreg.default.node.n2.rpc", Metadata: map[string]string{"protocol": "docs/PROTOCOL.md §4.6"}},
		{Name: "exec", Subject: "mpreg.default.node.n2.exec", Metadata: map[string]string{"protocol": "docs/PROTOCOL.md §6"}},
		{Name: "ext-rpc", Subject: "mpreg.default.ext.rpc", QueueGroup: "mpreg", Metadata: map[string]string{"protocol": "docs/PROTOCOL.md §4.5"}},
	}, info.Endpoints)

	// A direct call reaches n2's exec endpoint; one through rpc is planned
	// by n1 or n2.
	follower := testcluster.Client(t, s.ClientURL(), client.Config{})
	_, err := follower.Call(context.Background(), "fail", nil)
	require.ErrorIs(t, err, schema.ErrFunctionError)
	rpc := testcluster.Client(t, s.ClientURL(), client.Config{NoFollow: true})
	_, err = rpc.Call(context.Background(), "echo", []any{1})
	require.NoError(t, err)
	// A request on n2's own rpc subject is planned by n2 and counted there.
	resp := decodeAs(t, request(t, nc, "mpreg.default.node.n2.rpc", []byte(`{"id":"own","cmds":[{"name":"e","fun":"echo","args":[2]}]}`), jsonHeader()), codec.JSONType)
	require.Equal(t, map[string]any{"e": int64(2)}, resp["results"])

	var rpcRequests int
	for _, st := range gather[micro.Stats](t, nc, "$SRV.STATS.mpreg", 2) {
		require.Equal(t, micro.StatsResponseType, st.Type)
		require.False(t, st.Started.IsZero())
		require.Len(t, st.Endpoints, 4)
		require.Zero(t, st.Endpoints[3].NumRequests, "ext-rpc of %s: no request came from another account", st.ID)
		rpcRequests += st.Endpoints[0].NumRequests
		own := 0
		if st.ID == "n2" {
			own = 1
		}
		require.Equal(t, own, st.Endpoints[1].NumRequests, "node-rpc of %s", st.ID)
		if st.ID == "n2" {
			exec := st.Endpoints[2]
			require.Equal(t, "exec", exec.Name)
			require.GreaterOrEqual(t, exec.NumRequests, 1)
			require.Equal(t, 1, exec.NumErrors)
			require.Contains(t, exec.LastError, "FUNCTION_ERROR")
			require.Positive(t, exec.ProcessingTime)
		}
	}
	require.Equal(t, 1, rpcRequests, "one planner counts the rpc request")
}
