package client_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/mpreg/mpreg/bus"
	"github.com/mpreg/mpreg/client"
	"github.com/mpreg/mpreg/internal/testcluster"
	"github.com/mpreg/mpreg/internal/testsecure"
	"github.com/mpreg/mpreg/mesh"
	"github.com/mpreg/mpreg/schema"
)

// TestInboxPrefix: NATS users allowed to subscribe only under their own
// inbox prefix call with Config.Dial.InboxPrefix, every inbox of the client
// (replies, streams, the membership sync) under it; without it NATS
// refuses the client's inbox and the call ends PERMISSION_DENIED at once.
func TestInboxPrefix(t *testing.T) {
	srv := testsecure.Server(t, `authorization { users: [
		{user: node, password: n}
		{user: alice, password: a, permissions: {publish: ["mpreg.default.rpc", "mpreg.default.cancel"], subscribe: ["_INBOX_alice.>"]}}
		{user: ops, password: o, permissions: {publish: ["mpreg.>"], subscribe: ["mpreg.>", "_INBOX_ops.>"]}}
	] }`)
	url := srv.ClientURL()
	nc := testcluster.Conn(t, url, testcluster.WithConnConfig(bus.ConnConfig{Servers: []string{url}, Auth: bus.Auth{User: "node", Password: "n"}}))
	testcluster.StartNode(t, nc, testcluster.NodeConfig(t, "n1"), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	alice := bus.Auth{User: "alice", Password: "a"}

	// alice may publish only on rpc and cancel: she goes by rpc.
	cl := testcluster.Client(t, url, client.Config{Dial: bus.ConnConfig{Auth: alice, InboxPrefix: "_INBOX_alice"}, NoFollow: true})
	v, err := cl.Call(ctx, "echo", []any{"hi"})
	require.NoError(t, err)
	require.Equal(t, "hi", v)
	var kinds []string
	resp, err := cl.RunWithEvents(ctx, &schema.Request{Progress: true, Cmds: []schema.Command{{Name: "x", Fun: "echo", Args: []any{1}}}},
		func(ev client.Event) { kinds = append(kinds, ev.Kind) })
	require.NoError(t, err)
	require.EqualValues(t, 1, resp.Results["x"])
	require.Equal(t, []string{schema.EventPlanned, schema.EventStep}, kinds)

	cl = testcluster.Client(t, url, client.Config{Dial: bus.ConnConfig{Auth: alice}, NoFollow: true, Timeout: 20 * time.Second})
	start := time.Now()
	_, err = cl.Call(ctx, "echo", []any{"hi"})
	require.ErrorIs(t, err, schema.ErrPermissionDenied)
	require.ErrorIs(t, err, mesh.ErrInboxRefused)
	require.ErrorIs(t, err, nats.ErrPermissionViolation)
	require.Contains(t, err.Error(), "subscribe its reply inbox")
	require.Contains(t, err.Error(), `Subscription to "_INBOX.`)
	require.Less(t, time.Since(start), failFast)

	// ops follows the membership and calls nodes directly; a client that
	// does not follow asks for the peers (a sync request, on its inbox).
	ops := client.Config{Dial: bus.ConnConfig{Auth: bus.Auth{User: "ops", Password: "o"}, InboxPrefix: "_INBOX_ops"}}
	cl = testcluster.Client(t, url, ops)
	testcluster.WaitForRoute(t, cl.Table(), "echo", nil, "n1")
	v, err = cl.Call(ctx, "echo", []any{"direct"})
	require.NoError(t, err)
	require.Equal(t, "direct", v)
	ops.NoFollow = true
	peers, err := testcluster.Client(t, url, ops).Peers(ctx)
	require.NoError(t, err)
	require.Len(t, peers, 1)
	require.Equal(t, "n1", peers[0].Hello.Node)

	for _, bad := range []string{"_INBOX.>", "a b", "_INBOX.", "x.*.y"} {
		_, err := client.Connect(ctx, client.Config{Dial: bus.ConnConfig{Servers: []string{url}, InboxPrefix: bad, Options: oneShot}, NoFollow: true})
		require.ErrorIs(t, err, client.ErrInvalidConfig, bad)
		require.ErrorIs(t, err, bus.ErrInvalidConfig, bad)
		require.Contains(t, err.Error(), "inbox prefix", bad)
	}
}
