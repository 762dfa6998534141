package objstore_test

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mpreg/mpreg/codec"
	"github.com/mpreg/mpreg/objref"
	"github.com/mpreg/mpreg/objref/objstore"
	"github.com/mpreg/mpreg/schema"
)

func TestHexDigest(t *testing.T) {
	sum := sha256.Sum256([]byte("x"))
	require.Equal(t, hex.EncodeToString(sum[:]), objstore.HexDigest("SHA-256="+base64.URLEncoding.EncodeToString(sum[:])))
	require.Empty(t, objstore.HexDigest("SHA-256=AAAA"), "not 32 bytes")
	require.Empty(t, objstore.HexDigest("MD5=xyz"))
}

// TestDecode: binary is the bytes themselves; msgpack and json decode and
// are unescaped (a map shaped like a reference, escaped when stored, comes
// back as that map); bytes that do not decode are INVALID_ARGUMENT naming
// the object.
func TestDecode(t *testing.T) {
	r := objref.Ref{Bucket: "b", Name: "n", Encoding: objref.Bytes}
	v, err := objstore.Decode(r, []byte{1, 2})
	require.NoError(t, err)
	require.Equal(t, []byte{1, 2}, v)

	inner := objref.Ref{Bucket: "b", Name: "m", Size: 1, SHA256: hex.EncodeToString(make([]byte, 32)), Encoding: objref.Bytes}.Tree()
	val := map[string]any{"lit": map[string]any{"$obj": int64(1)}, "ref": inner}
	data, err := codec.MsgPack.Encode(objref.Escape(val))
	require.NoError(t, err)
	r.Encoding = objref.MsgPack
	v, err = objstore.Decode(r, data)
	require.NoError(t, err)
	require.Equal(t, val, v, "what was escaped to be stored comes back as it was")

	r.Encoding = objref.JSON
	v, err = objstore.Decode(r, []byte(`{"$lit": {"$lit": 2}}`))
	require.NoError(t, err)
	require.Equal(t, map[string]any{"$lit": int64(2)}, v)

	_, err = objstore.Decode(r, []byte(`{not json`))
	var se *schema.Error
	require.True(t, errors.As(err, &se))
	require.Equal(t, schema.CodeInvalidArgument, se.Code)
	require.Contains(t, se.Message, "object b/n does not decode as json")
}

func TestMismatchNamesWhoStoredIt(t *testing.T) {
	r := objref.Ref{Bucket: "b", Name: "n"}
	e := objstore.Mismatch(r, map[string]string{objstore.MetaNode: "n7", objstore.MetaID: "r1/x"}, "its bytes do not match its SHA-256")
	require.Equal(t, schema.CodeInternal, e.Code)
	require.Equal(t, "object b/n: its bytes do not match its SHA-256 (stored by node n7 for \"r1/x\")", e.Message)
	require.Equal(t, "unknown", objstore.Mismatch(r, nil, "x").Details.(map[string]any)["stored_by"])
}
