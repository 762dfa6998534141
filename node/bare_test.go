package node_test

// docs/PROTOCOL.md §3, §6.2: nodes that both say so in hello (bare) send
// each other exec and delegated requests, and their replies, without a
// header; a peer that does not say so gets Content-Type as before.

import (
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/mpreg/mpreg/bus"
	"github.com/mpreg/mpreg/codec"
	"github.com/mpreg/mpreg/internal/testcluster"
	"github.com/mpreg/mpreg/internal/testwait"
)

// wireTap copies the messages of the subjects it watches and of every reply
// inbox, as a NATS tool would see them on the wire.
type wireTap struct {
	msgs    chan *nats.Msg // on the watched subject
	replies chan *nats.Msg // on any _INBOX subject
}

func tap(t testing.TB, url, subject string) *wireTap {
	t.Helper()
	nc := rawConn(t, url)
	w := &wireTap{msgs: make(chan *nats.Msg, 64), replies: make(chan *nats.Msg, 4096)}
	_, err := nc.ChanSubscribe(subject, w.msgs)
	require.NoError(t, err)
	_, err = nc.ChanSubscribe("_INBOX.>", w.replies)
	require.NoError(t, err)
	require.NoError(t, nc.Flush())
	return w
}

// replyTo waits for the reply to m.
func (w *wireTap) replyTo(t testing.TB, m *nats.Msg) *nats.Msg {
	t.Helper()
	require.NotEmpty(t, m.Reply)
	for {
		r := testwait.Recv(t, w.replies, "the reply on "+m.Reply)
		if r.Subject == m.Reply {
			return r
		}
	}
}

// requireBare checks that m went without a header and holds a MessagePack
// map, and returns it decoded.
func requireBare(t testing.TB, m *nats.Msg, what string) map[string]any {
	t.Helper()
	require.Nil(t, m.Header, "%s has a header", what)
	require.Zero(t, bus.HeaderBytes(m), "%s has a header block", what)
	require.Equal(t, codec.MsgPack, codec.Sniff(m.Data), "%s is not a MessagePack map: % x", what, m.Data[:min(len(m.Data), 8)])
	tree, err := codec.MsgPack.Decode(m.Data)
	require.NoError(t, err, what)
	return tree.(map[string]any)
}

func TestNodesExchangeStepsWithoutHeader(t *testing.T) {
	srv, n1, n2 := servingPair(t)
	hello, _, _ := n1.Table().Hello(n2.ID())
	require.Equal(t, codec.MsgPackType, hello.Bare, "a node says in hello that it reads MessagePack without header")
	caller := rawConn(t, srv.ClientURL())

	exec := tap(t, srv.ClientURL(), execSubject(n2.ID()))
	resp := decodeAs(t, request(t, caller, "mpreg.default.node.n1.rpc",
		[]byte(`{"cmds":[{"name":"a","fun":"whoami","locs":["at-n2"]}]}`), jsonHeader()), codec.JSONType)
	require.Nil(t, resp["error"])
	require.Equal(t, map[string]any{"a": "n2"}, resp["results"])

	m := testwait.Recv(t, exec.msgs, "the exec to n2")
	body := requireBare(t, m, "the exec request")
	require.Equal(t, "whoami", body["fun"])
	require.Equal(t, map[string]any{"result": "n2"}, requireBare(t, exec.replyTo(t, m), "the exec reply"))

	// A run only n2 can run is delegated to n2's own rpc subject: that
	// request and its response go without a header too.
	rpc := tap(t, srv.ClientURL(), "mpreg.default.node.n2.rpc")
	resp = decodeAs(t, request(t, caller, "mpreg.default.node.n1.rpc", []byte(`{"cmds":[
		{"name":"a","fun":"whoami","locs":["at-n2"]},
		{"name":"b","fun":"echo","args":["a"],"locs":["at-n2"]}]}`), jsonHeader()), codec.JSONType)
	require.Nil(t, resp["error"])
	require.Equal(t, map[string]any{"b": "n2"}, resp["results"])
	m = testwait.Recv(t, rpc.msgs, "the delegated request to n2")
	require.Len(t, requireBare(t, m, "the delegated request")["cmds"], 2)
	results := requireBare(t, rpc.replyTo(t, m), "the delegated response")["results"].(map[string]any)
	require.Len(t, results, 1, "the run's sink, under the name the delegating planner gave it")
	for _, v := range results {
		require.Equal(t, "n2", v)
	}
}

// A peer whose hello does not offer bare (as before this addition) gets
// its exec requests with Content-Type, and runs them.
func TestHeaderTowardPeerWithoutBare(t *testing.T) {
	srv := testcluster.Server(t)
	n1 := servingNode(t, srv.ClientURL(), "n1")
	newFake(t, srv.ClientURL(), "old-1", map[string][]string{"size": {}}, nil)
	testcluster.WaitForRoute(t, n1.Table(), "size", nil, "old-1")
	exec := tap(t, srv.ClientURL(), execSubject("old-1"))

	resp := rpcJSON(t, rawConn(t, srv.ClientURL()), `{"cmds":[{"name":"s","fun":"size","args":["four"]}]}`)
	require.Nil(t, resp["error"])
	require.Equal(t, map[string]any{"s": int64(4)}, resp["results"])
	m := testwait.Recv(t, exec.msgs, "the exec to old-1")
	require.Equal(t, codec.MsgPackType, m.Header.Get(codec.HeaderContentType))
}

// What reads a body without header by its first byte, and what does not:
// JSON stays JSON everywhere (as callers and older nodes send it), a
// MessagePack map is read as such only on a node's exec and node rpc
// subjects, and its reply goes without header in MessagePack.
func TestBareBodies(t *testing.T) {
	srv := testcluster.Server(t)
	testcluster.Node(t, srv.ClientURL(), testcluster.NodeConfig(t, "n1"), registerStd)
	nc := rawConn(t, srv.ClientURL())
	mp := func(v any) []byte {
		b, err := msgpack.Marshal(v)
		require.NoError(t, err)
		return b
	}
	execBody := map[string]any{"cluster": "default", "id": "b/x", "fun": "add", "args": []any{40, 2}, "kwargs": map[string]any{}}
	rpcBody := map[string]any{"id": "b1", "cmds": []any{map[string]any{"name": "a", "fun": "add", "args": []any{40, 2}}}}
	execJSONBody, err := codec.JSON.Encode(execBody)
	require.NoError(t, err)

	// JSON without header, with leading white space as NATS tools may
	// send it: JSON back, without header.
	m := request(t, nc, execSubject("n1"), append([]byte(" \n\t"), execJSONBody...), nil)
	require.Nil(t, m.Header)
	require.Equal(t, map[string]any{"result": int64(42)}, decodeAs(t, m, codec.JSONType))

	// MessagePack without header on exec and node rpc: MessagePack back,
	// without header.
	m = request(t, nc, execSubject("n1"), mp(execBody), nil)
	require.Equal(t, map[string]any{"result": int64(42)}, requireBare(t, m, "the exec reply"))
	m = request(t, nc, "mpreg.default.node.n1.rpc", mp(rpcBody), nil)
	require.Equal(t, map[string]any{"a": int64(42)}, requireBare(t, m, "the node rpc reply")["results"])

	// A body that does not decode still gets its error, in the codec its
	// first byte tells.
	m = request(t, nc, execSubject("n1"), []byte{0x81, 0xc1}, nil)
	e := requireBare(t, m, "the error reply")["error"].(map[string]any)
	require.Equal(t, "INVALID_REQUEST", e["code"])

	// On the cluster's rpc subject a body without header is JSON, as
	// before: a MessagePack one does not decode.
	m = request(t, nc, rpcSubject, mp(rpcBody), nil)
	require.Nil(t, m.Header)
	e = wireError(t, decodeAs(t, m, codec.JSONType))
	require.Equal(t, "INVALID_REQUEST", e["code"])
	require.True(t, strings.Contains(e["message"].(string), "decode"), "%v", e)
}
