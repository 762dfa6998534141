package node_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/mpreg/mpreg/client"
	"github.com/mpreg/mpreg/codec"
	"github.com/mpreg/mpreg/internal/testcluster"
	"github.com/mpreg/mpreg/node"
	"github.com/mpreg/mpreg/schema"
)

// streamOf sends body on the rpc subject over plain NATS and collects the
// messages of its response until the last one: a message whose
// Mpreg-Event is "result", or that has none.
func streamOf(t *testing.T, nc *nats.Conn, body string) []*nats.Msg {
	t.Helper()
	inbox := nc.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	require.NoError(t, err)
	defer func() { _ = sub.Unsubscribe() }()
	require.NoError(t, nc.PublishMsg(&nats.Msg{Subject: rpcSubject, Reply: inbox, Header: jsonHeader(), Data: []byte(body)}))
	var out []*nats.Msg
	for {
		m, err := sub.NextMsg(bound)
		require.NoError(t, err)
		out = append(out, m)
		if ev := m.Header.Get(schema.HeaderEvent); ev == "" || ev == schema.EventResult {
			require.NoError(t, nc.Flush())
			n, _, err := sub.Pending()
			require.NoError(t, err)
			require.Zero(t, n, "nothing after the result")
			return out
		}
	}
}

func events(ms []*nats.Msg) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.Header.Get(schema.HeaderEvent)
	}
	return out
}

func body(t *testing.T, m *nats.Msg) map[string]any {
	t.Helper()
	tree, err := codec.JSON.Decode(m.Data)
	require.NoError(t, err)
	return tree.(map[string]any)
}

// TestStream: a streamed response over plain NATS is one result message
// for a quick request, planned then result for a slow one, and with
// progress planned, one step event per attempt in order, then result; a
// request without stream still gets exactly one message.
func TestStream(t *testing.T) {
	s := testcluster.Server(t)
	for _, id := range []string{"a", "b"} {
		testcluster.Node(t, s.ClientURL(), testcluster.NodeConfig(t, id, "at-"+id), func(n *node.Node) {
			require.NoError(t, n.Register("nap", func(ctx context.Context, ms int64, tag string) (string, error) {
				select {
				case <-time.After(time.Duration(ms) * time.Millisecond):
					return tag + "@" + n.ID(), nil
				case <-ctx.Done():
					return "", ctx.Err()
				}
			}))
		})
	}
	nc := testcluster.Conn(t, s.ClientURL())

	quick := streamOf(t, nc, `{"stream": true, "cmds": [{"name": "q", "fun": "nap", "args": [0, "t"]}]}`)
	require.Equal(t, []string{"result"}, events(quick), "a quick request costs one message")
	require.Contains(t, []any{"t@a", "t@b"}, body(t, quick[0])["results"].(map[string]any)["q"])

	slow := streamOf(t, nc, `{"id": "s1", "stream": true, "cmds": [{"name": "s", "fun": "nap", "args": [400, "t"]}]}`)
	require.Equal(t, []string{"planned", "result"}, events(slow))
	planned := body(t, slow[0])
	require.Equal(t, "s1", planned["id"])
	require.Contains(t, []any{"a", "b"}, planned["planner"])
	require.EqualValues(t, 1, planned["steps"])
	require.Positive(t, planned["incarnation"])

	prog := streamOf(t, nc, `{"progress": true, "cmds": [
		{"name": "x", "fun": "nap", "args": [1, "t"], "locs": ["at-a"]},
		{"name": "y", "fun": "nap", "args": [1, "x"], "locs": ["at-b"]},
		{"name": "z", "fun": "nap", "args": [1, "y"], "locs": ["at-a"]}]}`)
	require.Equal(t, []string{"planned", "step", "step", "step", "result"}, events(prog))
	for i, want := range []struct{ step, node string }{{"x", "a"}, {"y", "b"}, {"z", "a"}} {
		e := body(t, prog[1+i])
		require.Equal(t, want.step, e["step"])
		require.Equal(t, want.node, e["node"])
		require.Equal(t, "ok", e["code"])
	}
	res := body(t, prog[4])
	require.Nil(t, res["error"])
	require.Equal(t, "t@a@b@a", res["results"].(map[string]any)["z"])

	plain := streamOf(t, nc, `{"cmds": [{"name": "p", "fun": "nap", "args": [400, "t"]}]}`)
	require.Equal(t, []string{""}, events(plain), "without stream: one message, no event header")

	// The Go client: events on the caller's goroutine, then the response.
	cl := testcluster.Client(t, s.ClientURL(), client.Config{NoFollow: true})
	var got []client.Event
	resp, err := cl.RunWithEvents(context.Background(), &schema.Request{Progress: true, Cmds: []schema.Command{
		{Name: "x", Fun: "nap", Args: []any{1, "t"}, Locs: []string{"at-b"}},
		{Name: "y", Fun: "nap", Args: []any{1, "x"}, Locs: []string{"at-a"}}}}, func(ev client.Event) { got = append(got, ev) })
	require.NoError(t, err)
	require.Equal(t, "t@b@a", resp.Results["y"])
	require.Len(t, got, 3)
	require.Equal(t, schema.EventPlanned, got[0].Kind)
	require.EqualValues(t, 2, got[0].Planned.Steps)
	require.Equal(t, schema.EventStep, got[1].Kind)
	require.Equal(t, "x", got[1].Step.Step)
	require.Equal(t, "b", got[1].Step.Node)
	require.Equal(t, "y", got[2].Step.Step)

	bad := streamOf(t, nc, `{"stream": true, "cmds": [{"name": "x", "fun": "nap", "args": ["x"]}, {"name": "x", "fun": "nap"}]}`)
	require.Len(t, bad, 1, "a request refused before planning gets its one reply")
	require.Equal(t, "INVALID_REQUEST", wireError(t, body(t, bad[0]))["code"])
}
