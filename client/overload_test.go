package client_test

import (
	"sync/atomic"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/mpreg/mpreg/client"
	"github.com/mpreg/mpreg/internal/testcluster"
	"github.com/mpreg/mpreg/internal/testwait"
	"github.com/mpreg/mpreg/schema"
)

// A node at its limit of requests answers OVERLOADED without reading the
// request (details.unread); Run sends it again (at most twice more), so that
// the queue group can pick another node. An OVERLOADED of a request that
// was read (a step found every node busy) is not sent again.
func TestRunRetriesUnreadOverloaded(t *testing.T) {
	srv := testcluster.Server(t)
	nc := testcluster.Conn(t, srv.ClientURL())
	var seen atomic.Int64
	sub, err := nc.QueueSubscribe("mpreg.default.rpc", "mpreg", func(m *nats.Msg) {
		h := nats.Header{"Content-Type": []string{"application/json"}}
		body := `{"id":"","results":{},"error":{"code":"OVERLOADED","message":"busy","details":{"limit":"max_requests","unread":true}}}`
		if seen.Load() > 100 {
			body = `{"id":"r3","results":{},"error":{"code":"OVERLOADED","message":"every node busy","step":"a"}}`
		}
		if seen.Add(1) == 3 {
			body = `{"id":"r1","results":{"a":1}}`
		}
		_ = m.RespondMsg(&nats.Msg{Data: []byte(body), Header: h})
	})
	require.NoError(t, err)
	defer func() { _ = sub.Unsubscribe() }()
	require.NoError(t, nc.Flush())

	c := testcluster.Client(t, srv.ClientURL(), client.Config{NoFollow: true})
	resp, err := c.Run(testwait.Ctx(t), &schema.Request{ID: "r1", Cmds: []schema.Command{{Name: "a", Fun: "echo", Args: []any{1}}}})
	require.NoError(t, err)
	require.Equal(t, map[string]any{"a": int64(1)}, resp.Results)
	require.Equal(t, int64(3), seen.Load())

	seen.Store(-10) // always busy from now on: the third refusal is returned
	_, err = c.Run(testwait.Ctx(t), &schema.Request{ID: "r2", Cmds: []schema.Command{{Name: "a", Fun: "echo", Args: []any{1}}}})
	require.ErrorIs(t, err, schema.ErrOverloaded)
	require.Equal(t, int64(-7), seen.Load(), "three sends in all")

	seen.Store(1000)
	_, err = c.Run(testwait.Ctx(t), &schema.Request{ID: "r3", Cmds: []schema.Command{{Name: "a", Fun: "echo", Args: []any{1}}}})
	require.ErrorIs(t, err, schema.ErrOverloaded)
	require.Equal(t, int64(1001), seen.Load(), "a request that was read is not sent again")
}
