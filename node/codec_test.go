package node_test

// docs/PROTOCOL.md §3: codec negotiation by Content-Type and Accept on every
// subject a node answers.

import (
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/mpreg/mpreg/codec"
	"github.com/mpreg/mpreg/internal/testcluster"
)

func TestCodecNegotiation(t *testing.T) {
	srv := testcluster.Server(t)
	testcluster.Node(t, srv.ClientURL(), testcluster.NodeConfig(t, "n1"), registerStd)
	nc := testcluster.Conn(t, srv.ClientURL())

	jsonBody := []byte(`{"id": "c1", "cmds": [{"name": "a", "fun": "add", "args": [40, 2]}]}`)
	mpBody, err := msgpack.Marshal(map[string]any{"id": "c1", "cmds": []any{
		map[string]any{"name": "a", "fun": "add", "args": []any{40, 2}},
	}})
	require.NoError(t, err)
	want := map[string]any{"a": int64(42)}
	supported := []any{codec.MsgPackType, codec.JSONType}

	cases := []struct {
		name  string
		body  []byte
		hdr   nats.Header
		reply string // the reply's Content-Type
		code  string // error code, "" for success
	}{
		{"json", jsonBody, nats.Header{"Content-Type": {codec.JSONType}}, codec.JSONType, ""},
		{"json with charset", jsonBody, nats.Header{"Content-Type": {"application/json; charset=utf-8"}}, codec.JSONType, ""},
		{"msgpack", mpBody, nats.Header{"Content-Type": {codec.MsgPackType}}, codec.MsgPackType, ""},
		{"no headers means json", jsonBody, nil, codec.JSONType, ""},
		{"headers without Content-Type mean json", jsonBody, nats.Header{"X-Trace": {"1"}}, codec.JSONType, ""},
		{"json body, Accept msgpack", jsonBody, nats.Header{"Content-Type": {codec.JSONType}, "Accept": {codec.MsgPackType}}, codec.MsgPackType, ""},
		{"msgpack body, Accept json", mpBody, nats.Header{"Content-Type": {codec.MsgPackType}, "Accept": {codec.JSONType}}, codec.JSONType, ""},
		{"Accept */*", mpBody, nats.Header{"Content-Type": {codec.MsgPackType}, "Accept": {"*/*"}}, codec.MsgPackType, ""},
		{"unknown Content-Type", []byte("cmds: []"), nats.Header{"Content-Type": {"application/yaml"}}, codec.JSONType, "UNSUPPORTED_CODEC"},
		{"unknown Content-Type with msgpack Accept", mpBody, nats.Header{"Content-Type": {"application/cbor"}, "Accept": {codec.MsgPackType}}, codec.JSONType, "UNSUPPORTED_CODEC"},
		{"unknown Accept", mpBody, nats.Header{"Content-Type": {codec.MsgPackType}, "Accept": {"application/xml"}}, codec.MsgPackType, "UNSUPPORTED_CODEC"},
		{"msgpack body labelled json", mpBody, nats.Header{"Content-Type": {codec.JSONType}}, codec.JSONType, "INVALID_REQUEST"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := request(t, nc, rpcSubject, tc.body, tc.hdr)
			resp := decodeAs(t, m, tc.reply)
			if tc.code == "" {
				require.Nil(t, resp["error"])
				require.Equal(t, "c1", resp["id"])
				require.Equal(t, want, resp["results"])
				return
			}
			e := wireError(t, resp)
			require.Equal(t, tc.code, e["code"])
			if tc.code == "UNSUPPORTED_CODEC" {
				require.ElementsMatch(t, supported, details(t, e)["supported"])
			}
		})
	}

	// exec and info follow the same rules.
	execBody := map[string]any{"cluster": "default", "id": "r/s", "fun": "add", "args": []any{1, 2}, "kwargs": map[string]any{}}
	mpExec, err := msgpack.Marshal(execBody)
	require.NoError(t, err)
	m := request(t, nc, execSubject("n1"), mpExec, nats.Header{"Content-Type": {codec.MsgPackType}})
	require.Equal(t, map[string]any{"result": int64(3)}, decodeAs(t, m, codec.MsgPackType))
	m = request(t, nc, execSubject("n1"), mpExec, nats.Header{"Content-Type": {codec.MsgPackType}, "Accept": {codec.JSONType}})
	require.Equal(t, map[string]any{"result": int64(3)}, decodeAs(t, m, codec.JSONType))
	m = request(t, nc, execSubject("n1"), []byte("x"), nats.Header{"Content-Type": {"text/plain"}})
	require.Equal(t, "UNSUPPORTED_CODEC", wireError(t, decodeAs(t, m, codec.JSONType))["code"])

	m = request(t, nc, infoSubject("n1"), nil, nats.Header{"Accept": {codec.MsgPackType}})
	require.Equal(t, "n1", decodeAs(t, m, codec.MsgPackType)["node"])
	m = request(t, nc, infoSubject("n1"), nil, nil)
	require.Equal(t, "n1", decodeAs(t, m, codec.JSONType)["node"])
}
