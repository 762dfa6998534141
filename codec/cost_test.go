package codec

import (
	"bytes"
	"errors"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"
)

// allocated returns the bytes f allocates.
func allocated(f func()) uint64 {
	var a, b runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&a)
	f()
	runtime.ReadMemStats(&b)
	return b.TotalAlloc - a.TotalAlloc
}

// A body whose tree would take far more memory than the body itself is
// refused once the estimate passes MaxDecoded: a 1 MiB MessagePack body of
// one-byte empty maps once took 70–100 MB to decode, and the same in JSON
// more. JSON is refused before anything is decoded.
func TestDecodeBoundsMemory(t *testing.T) {
	n := 1 << 20
	mp := append([]byte{0xdd, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}, bytes.Repeat([]byte{0x80}, n)...)
	var err error
	used := allocated(func() { _, err = MsgPack.Decode(mp) })
	require.True(t, errors.Is(err, ErrTooBig), "%v", err)
	require.Less(t, used, uint64(MaxDecoded+MaxDecoded/2), "allocated %d bytes", used)

	js := append([]byte{'['}, bytes.Repeat([]byte("{},"), n/3)...)
	js = append(js, "{}]"...)
	used = allocated(func() { _, err = JSON.Decode(js) })
	require.True(t, errors.Is(err, ErrTooBig), "%v", err)
	require.Less(t, used, uint64(1<<20), "JSON is refused before decoding: allocated %d bytes", used)

	// A body within the bound decodes, and its size is estimated.
	small := []byte(`{"a":[1,2,3],"b":"hello"}`)
	v, size, err := DecodeSized(JSON, small, MaxDecoded)
	require.NoError(t, err)
	require.NotNil(t, v)
	require.Greater(t, size, int64(len(small)))
	mb, err := MsgPack.Encode(v)
	require.NoError(t, err)
	_, size2, err := DecodeSized(MsgPack, mb, MaxDecoded)
	require.NoError(t, err)
	require.Greater(t, size2, int64(len(mb)))
	_, _, err = DecodeSized(MsgPack, mb, 10)
	require.True(t, errors.Is(err, ErrTooBig), "a smaller bound applies: %v", err)

	// Strings in JSON count their escapes once.
	cost, err := jsonCost([]byte(`"a\"b"`), MaxDecoded)
	require.NoError(t, err)
	require.Equal(t, int64(costString+3), cost)
}
