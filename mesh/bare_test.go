package mesh_test

import (
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/mpreg/mpreg/codec"
	"github.com/mpreg/mpreg/mesh"
)

// FuzzBareDecode: on a subject that reads bodies without header by their
// first byte, every body the old rule read (no header means JSON) decodes
// to the same value, answered in JSON; a MessagePack map decodes as it
// would with Content-Type, answered in MessagePack. A reply without
// Content-Type is read the same way.
func FuzzBareDecode(f *testing.F) {
	for _, s := range []string{`{"cluster":"default","id":"a/b","fun":"echo","args":[1]}`, ` {"a":[]}`, `[1]`, `"x"`, ``, `nul`} {
		f.Add([]byte(s))
	}
	for _, v := range []any{map[string]any{"cluster": "default", "fun": "echo", "args": []any{int64(1), []byte{0xff}}}, map[string]any{}, []any{1}} {
		b, err := codec.MsgPack.Encode(v)
		require.NoError(f, err)
		f.Add(b)
	}
	const limit = 1 << 20
	f.Fuzz(func(t *testing.T, data []byte) {
		bare := &nats.Msg{Subject: "x", Data: data}
		tree, _, reply, err := mesh.DecodeSized(bare, limit, true)
		old, _, oldReply, oldErr := mesh.DecodeSized(bare, limit, false)
		require.Equal(t, codec.JSON, oldReply)
		treeReply, replyErr := mesh.DecodeReply(bare)
		if codec.Sniff(data) == codec.JSON {
			require.Equal(t, codec.JSON, reply)
			require.Equal(t, oldErr == nil, err == nil, "%q", data)
			require.Equal(t, old, tree)
		} else {
			labelled := &nats.Msg{Subject: "x", Data: data, Header: nats.Header{codec.HeaderContentType: {codec.MsgPackType}}}
			want, _, wantReply, wantErr := mesh.DecodeSized(labelled, limit, false)
			require.Equal(t, codec.MsgPack, reply)
			require.Equal(t, wantReply, reply)
			require.Equal(t, wantErr == nil, err == nil, "% x", data)
			require.Equal(t, want, tree)
			require.Error(t, oldErr, "a MessagePack map is no JSON: % x", data)
		}
		if err == nil && replyErr == nil {
			require.Equal(t, tree, treeReply)
		}
	})
}
