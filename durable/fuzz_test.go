package durable

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"
)

// fuzzSeeds are stored values of every kind, good and bad.
func fuzzSeeds(t testing.TB) [][]byte {
	var seeds [][]byte
	for _, v := range []any{
		&Record{V: 1, ID: "r1", Caller: "alice", Sum: "abc", Body: []byte{0x81, 0xa1, 'x', 1}, Reply: "_INBOX.x",
			ReplyCodec: "msgpack", Steps: 3, CreatedMS: 1732570005123, DeadlineMS: 1732570009123, ResultTTLMS: 86400000},
		&Final{V: 1, ID: "r1", Caller: "alice", Sum: "abc", Status: StatusDone, Response: []byte("{}"), Planner: "n1",
			Steps: 3, StepsDone: 3, FinishedMS: 1732570006123},
		&stepValue{V: 1, Name: "|a", Value: []byte{0, 1, 2}},
		&Record{V: 2, ID: "newer"},
		map[string]any{"v": 1, "id": []int{1, 2}},
		map[string]any{"v": "1"},
		nil,
	} {
		b, err := msgpack.Marshal(v)
		require.NoError(t, err)
		seeds = append(seeds, b, b[:len(b)/2])
	}
	return append(seeds, []byte{}, []byte{0xc1}, []byte{0xdf, 0xff, 0xff, 0xff, 0xff}, []byte{0xc6, 0xff, 0xff, 0xff, 0xff})
}

// FuzzDecode: no bytes make a decoder panic; every failure wraps
// ErrCorrupt or ErrNewer; a value that decodes encodes and decodes again
// to the same (an empty byte string and none both stay unwritten).
func FuzzDecode(f *testing.F) {
	for _, b := range fuzzSeeds(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeRecord(b)
		checkDecoded(t, r, err, func(b []byte) (any, error) { return DecodeRecord(b) })
		fin, err := DecodeFinal(b)
		checkDecoded(t, fin, err, func(b []byte) (any, error) { return DecodeFinal(b) })
		sv, err := decodeStep(b)
		checkDecoded(t, sv, err, func(b []byte) (any, error) { return decodeStep(b) })
	})
}

// checkDecoded checks one decoder's answer.
func checkDecoded[T any](t *testing.T, v *T, err error, again func([]byte) (any, error)) {
	if err != nil {
		if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrNewer) {
			t.Fatalf("error %v wraps neither ErrCorrupt nor ErrNewer", err)
		}
		return
	}
	b, err := encode(v)
	require.NoError(t, err)
	w, err := again(b)
	require.NoError(t, err)
	b2, err := encode(w)
	require.NoError(t, err)
	require.Equal(t, b, b2)
}

// TestDecodeSeeds runs the fuzz seeds as a plain test, checking what each
// gives.
func TestDecodeSeeds(t *testing.T) {
	seeds := fuzzSeeds(t)
	r, err := DecodeRecord(seeds[0])
	require.NoError(t, err)
	require.Equal(t, "r1", r.ID)
	_, err = DecodeRecord(seeds[1])
	require.ErrorIs(t, err, ErrCorrupt)
	f, err := DecodeFinal(seeds[2])
	require.NoError(t, err)
	require.Equal(t, StatusDone, f.Status)
	sv, err := decodeStep(seeds[4])
	require.NoError(t, err)
	require.Equal(t, "|a", sv.Name)
	_, err = DecodeRecord(seeds[6])
	require.ErrorIs(t, err, ErrNewer)
	_, err = DecodeRecord(seeds[8])
	require.ErrorIs(t, err, ErrCorrupt)
	_, err = DecodeFinal(seeds[10])
	require.ErrorIs(t, err, ErrCorrupt)
	_, err = DecodeFinal(seeds[12])
	require.ErrorIs(t, err, ErrCorrupt, "msgpack nil")
}

// TestCheckMsgpack: whole values pass, whatever their kinds; a length or
// count past the end, deep nesting, code 0xc1 and trailing bytes do not.
func TestCheckMsgpack(t *testing.T) {
	for _, v := range []any{nil, true, 1, -1, 300, -300, 1 << 40, 1.5, float32(2.5), "", "s", string(make([]byte, 300)),
		[]byte{}, make([]byte, 70000), []any{1, "a", []any{}}, map[string]any{"a": map[string]any{"b": []byte{1}}},
		msgpack.RawMessage{0xd4, 1, 2}, msgpack.RawMessage{0xd8, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
		msgpack.RawMessage{0xc7, 1, 5, 9}, make([]any, 20), make(map[string]int, 0)} {
		b, err := msgpack.Marshal(v)
		require.NoError(t, err)
		require.NoError(t, checkMsgpack(b), "%x", b)
	}
	deep := []byte{}
	for range maxDepth + 1 {
		deep = append(deep, 0x91)
	}
	for _, c := range []struct {
		b    []byte
		want error
	}{
		{nil, errShort}, {[]byte{0xc1}, errCode}, {[]byte{0x01, 0x02}, errExtra}, {[]byte{0xa3, 'a'}, errShort},
		{[]byte{0xdb, 0xff, 0xff, 0xff, 0xff}, errShort}, {[]byte{0xdd, 0, 0, 0, 3, 1, 2}, errShort},
		{[]byte{0x82, 1, 2, 3}, errShort}, {[]byte{0xcb, 0, 0}, errShort}, {[]byte{0xc9, 0, 0}, errShort},
		{append(deep, 1), errDeep}, {[]byte{0x92, 0x91}, errShort},
	} {
		require.ErrorIs(t, checkMsgpack(c.b), c.want, "%x", c.b)
	}
}
