package node

import (
	"bytes"
	"context"
	"io"
	"testing"

	"github.com/stretchr/testify/require"
)

// The cache keeps at most its bound, dropping the least recently used
// objects first, and never one larger than itself.
func TestObjCacheEvictsLeastRecentlyUsed(t *testing.T) {
	c := newObjCache(10)
	c.put("a", "sa", make([]byte, 4))
	c.put("b", "sb", make([]byte, 4))
	_, ok := c.get("a") // a is now the most recent
	require.True(t, ok)
	c.put("c", "sc", make([]byte, 4)) // 12 > 10: b goes
	_, ok = c.get("b")
	require.False(t, ok, "b was the least recently used")
	for _, k := range []string{"a", "c"} {
		_, ok := c.get(k)
		require.True(t, ok, k)
	}
	size, n := c.bytes()
	require.Equal(t, int64(8), size)
	require.Equal(t, 2, n)

	c.put("huge", "sh", make([]byte, 11))
	_, ok = c.get("huge")
	require.False(t, ok, "larger than the whole cache")
	c.put("a", "sa2", make([]byte, 1)) // replaced, not counted twice
	e, ok := c.get("a")
	require.True(t, ok)
	require.Equal(t, "sa2", e.sha256)
	size, _ = c.bytes()
	require.Equal(t, int64(5), size)
}

// A capReader passes up to its bound and fails past it.
func TestCapReader(t *testing.T) {
	r := &capReader{r: bytes.NewReader(make([]byte, 10)), left: 10}
	n, err := io.Copy(io.Discard, r)
	require.NoError(t, err)
	require.Equal(t, int64(10), n)
	require.False(t, r.over)

	r = &capReader{r: bytes.NewReader(make([]byte, 11)), left: 10}
	_, err = io.Copy(io.Discard, r)
	require.ErrorIs(t, err, errOverCap)
	require.True(t, r.over)
}

// A *Blob parameter takes inline binary, a string or null; a Func of
// *Blob too.
func TestBlobParameter(t *testing.T) {
	read := func(b *Blob) (string, error) {
		if b == nil {
			return "<nil>", nil
		}
		data, err := io.ReadAll(b)
		return string(data), err
	}
	raw, err := wrap("f", read, nil, nil)
	require.NoError(t, err)
	for _, c := range []struct {
		arg  any
		want string
	}{{[]byte("bin"), "bin"}, {"str", "str"}, {nil, "<nil>"}} {
		v, err := raw(context.Background(), []any{c.arg}, nil)
		require.NoError(t, err)
		require.Equal(t, c.want, v)
	}
	_, err = raw(context.Background(), []any{int64(1)}, nil)
	require.ErrorContains(t, err, "want binary or a string")

	fn := Func(func(_ context.Context, b *Blob) (string, error) { return read(b) })
	v, err := fn(context.Background(), []any{[]byte("via Func")}, nil)
	require.NoError(t, err)
	require.Equal(t, "via Func", v)
	_, err = fn(context.Background(), []any{map[string]any{}}, nil)
	require.Error(t, err, "a map is no Blob")

	require.Equal(t, blobSlots{pos: []int{1}, names: []string{"data"}},
		blobSlotsOf(func(context.Context, int, *Blob) {}, []string{"n", "data"}))
	require.Equal(t, blobSlots{}, blobSlotsOf(RawFunc(nil), nil))
}
