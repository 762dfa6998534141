package codec

import (
	"encoding/json"
	"math"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

// fuzzBodies are real MPREG bodies (docs/PROTOCOL.md §4–§7) that seed the fuzz
// targets in both codecs.
var fuzzBodies = []any{
	// RPC request, §4.
	map[string]any{
		"id": "req-1",
		"cmds": []any{
			map[string]any{"name": "|first", "fun": "echo", "args": []any{"hi there!"}},
			map[string]any{"name": "|second", "fun": "echo", "args": []any{"|first"}},
			map[string]any{"name": "|third", "fun": "echos", "args": []any{"|first", "AND ME TOO"},
				"kwargs": map[string]any{}, "locs": []any{"dataset-a"}},
			map[string]any{"name": "|fourth", "fun": "sum", "args": []any{
				map[string]any{"$ref": "|third", "path": "/0"}, int64(math.MaxInt64), int64(-1 << 62), 2.5}},
		},
		"timeout_ms": int64(5000),
		"results":    "sinks",
	},
	// RPC response with an error, §5.
	map[string]any{
		"id": "req-1",
		"error": map[string]any{"code": "NO_ROUTE", "message": "no live node offers echo with locs [gpu]",
			"step": "|third", "node": "", "details": map[string]any{"fun": "echo", "locs": []any{"gpu"}}},
		"results": map[string]any{"|first": "hi there!"},
	},
	// Exec request and replies, §6.
	map[string]any{"cluster": "default", "id": "req-1/|first", "fun": "echo",
		"args":   []any{"hi", []byte{0, 1, 2, 0xff}, nil, true, uint64(math.MaxUint64)},
		"kwargs": map[string]any{"scale": 1.0}, "deadline_ms": int64(1732570005123)},
	map[string]any{"result": nil},
	map[string]any{"result": []any{"hi there!", "AND ME TOO"}},
	// Hello, heartbeat and goodbye, §7.
	map[string]any{"cluster": "default", "node": "n1-4KX2QZ", "incarnation": int64(1732570000123), "version": int64(3),
		"funs":   map[string]any{"echo": []any{}, "echos": []any{}, "predict": []any{"model-a", "gpu"}},
		"codecs": []any{"application/msgpack", "application/json"}, "advertised_urls": []any{"nats://10.0.0.5:4222"},
		"meta": map[string]any{"name": "worker one", "mpreg": "0.1.0"}, "proto": int64(1)},
	map[string]any{"cluster": "default", "node": "n1", "incarnation": int64(1), "version": int64(3), "seq": int64(42),
		"load": map[string]any{"inflight": int64(2), "limit": int64(64)}},
	map[string]any{"cluster": "default", "node": "n1", "incarnation": int64(1)},
}

// fuzzJSON are extra JSON inputs around the edges of the decoder.
var fuzzJSON = []string{
	`{"a":1.0,"b":-0,"c":1e400,"d":18446744073709551615,"e":9223372036854775808}`,
	`"\ud800\u2028\u0000é"`,
	`[[[[[[[[[[]]]]]]]]]]`,
	`{"cmds":[{"name":"a","fun":"f","args":"x"}]} `,
	`{} {}`,
	`nul`,
}

// hasNaN reports whether a NaN appears anywhere in v.
func hasNaN(v any) bool {
	switch t := v.(type) {
	case float64:
		return math.IsNaN(t)
	case []any:
		for _, e := range t {
			if hasNaN(e) {
				return true
			}
		}
	case map[string]any:
		for _, e := range t {
			if hasNaN(e) {
				return true
			}
		}
	}
	return false
}

// hasBytes reports whether a []byte appears anywhere in v.
func hasBytes(v any) bool {
	switch t := v.(type) {
	case []byte:
		return true
	case []any:
		for _, e := range t {
			if hasBytes(e) {
				return true
			}
		}
	case map[string]any:
		for _, e := range t {
			if hasBytes(e) {
				return true
			}
		}
	}
	return false
}

// checkRoundTrip decodes data with c; when that succeeds, the value must
// encode and decode again to an equal value.
func checkRoundTrip(t *testing.T, c Codec, data []byte, compare bool) {
	v, err := c.Decode(data)
	if err != nil {
		require.ErrorIs(t, err, ErrDecode)
		return
	}
	if hasNaN(v) {
		if _, err := c.Encode(v); err != nil {
			require.NotEqual(t, MsgPack, c, "msgpack must encode NaN")
		}
		return
	}
	b, err := c.Encode(v)
	require.NoError(t, err, "encode %#v", v)
	v2, err := c.Decode(b)
	require.NoError(t, err, "decode re-encoded %q", b)
	if compare {
		require.Equal(t, v, v2)
	}
}

func FuzzDecodeJSON(f *testing.F) {
	for _, body := range fuzzBodies {
		b, err := JSON.Encode(body)
		require.NoError(f, err)
		f.Add(b)
	}
	for _, s := range fuzzJSON {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := JSON.Decode(data)
		// JSON never decodes to []byte, so the comparison is exact; the
		// check stays for safety should that change.
		checkRoundTrip(t, JSON, data, err != nil || !hasBytes(v))
	})
}

func FuzzDecodeMsgPack(f *testing.F) {
	for _, body := range fuzzBodies {
		b, err := MsgPack.Encode(body)
		require.NoError(f, err)
		f.Add(b)
	}
	f.Add([]byte{0xdd, 0xff, 0xff, 0xff, 0xff, 0x01})           // array32 claiming 2^32-1 elements
	f.Add([]byte{0xc6, 0xff, 0xff, 0xff, 0xff, 0x01})           // bin32 claiming 4 GiB
	f.Add([]byte{0x82, 0x01, 0xa1, 'a', 0xc4, 0x01, 'b', 0x02}) // integer and binary keys
	f.Add([]byte{0xd6, 0xff, 0, 0, 0, 1})                       // timestamp ext
	f.Add([]byte{0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 1})           // NaN
	f.Fuzz(func(t *testing.T, data []byte) {
		checkRoundTrip(t, MsgPack, data, true)
	})
}

// TestSniff: exactly the first bytes of a MessagePack map mean MessagePack,
// and every real body is told apart in either codec.
func TestSniff(t *testing.T) {
	for b := 0; b < 256; b++ {
		want := JSON
		if b >= 0x80 && b <= 0x8f || b == 0xde || b == 0xdf {
			want = MsgPack
		}
		require.Equal(t, want, Sniff([]byte{byte(b), 0}), "first byte %#x", b)
	}
	require.Equal(t, JSON, Sniff(nil))
	for _, body := range fuzzBodies {
		j, err := JSON.Encode(body)
		require.NoError(t, err)
		require.Equal(t, JSON, Sniff(j))
		require.Equal(t, JSON, Sniff(append([]byte(" \r\n\t"), j...)))
		m, err := MsgPack.Encode(body)
		require.NoError(t, err)
		require.Equal(t, MsgPack, Sniff(m))
	}
	big := map[string]any{}
	for i := range 1 << 16 { // map 32
		big[strconv.Itoa(i)] = nil
	}
	for _, n := range []int{0, 15, 16, 1 << 16} {
		m, err := MsgPack.Encode(subMap(big, n))
		require.NoError(t, err)
		require.Equal(t, MsgPack, Sniff(m), "a map of %d keys", n)
	}
}

func subMap(m map[string]any, n int) map[string]any {
	out := make(map[string]any, n)
	for k, v := range m {
		if len(out) == n {
			break
		}
		out[k] = v
	}
	return out
}

// FuzzSniff: a body the old rule read (no header means JSON) is still read
// as JSON, whichever decoder accepts it; a body that decodes as a
// MessagePack map is read as MessagePack; only the first byte decides.
func FuzzSniff(f *testing.F) {
	for _, body := range fuzzBodies {
		for _, c := range Supported {
			b, err := c.Encode(body)
			require.NoError(f, err)
			f.Add(b)
		}
	}
	for _, s := range fuzzJSON {
		f.Add([]byte(s))
		f.Add([]byte(" \n" + s))
	}
	f.Add([]byte{0xde, 0, 1, 0xa1, 'a', 0xc0})
	f.Add([]byte{0xdf, 0, 0, 0, 0})
	f.Add([]byte("\xef\xbb\xbf{}")) // a UTF-8 byte order mark, which JSON does not allow
	f.Fuzz(func(t *testing.T, data []byte) {
		got := Sniff(data)
		if len(data) > 0 {
			require.Equal(t, got, Sniff(data[:1]))
		}
		if json.Valid(data) {
			require.Equal(t, JSON, got, "valid JSON %q", data)
		}
		if _, err := JSON.Decode(data); err == nil {
			require.Equal(t, JSON, got, "JSON the codec reads: %q", data)
		}
		if v, err := MsgPack.Decode(data); err == nil {
			_, isMap := v.(map[string]any)
			require.Equal(t, isMap, got == MsgPack, "MessagePack % x decodes to %T", data, v)
		}
	})
}
