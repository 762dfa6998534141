package codec

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/mpreg/mpreg/schema"
)

func checkMsgpackDecoder(t *testing.T, data []byte) {
	t.Helper()
	want, wcost, werr := refMsgpackDecode(data, MaxDecoded)
	got, gcost, gerr := MsgPack.(msgpackCodec).decode(data, MaxDecoded)
	if (werr == nil) != (gerr == nil) {
		t.Fatalf("%x: reference error %v, decoder error %v", data, werr, gerr)
	}
	// fmt prints maps sorted and NaN as NaN, which DeepEqual never equals.
	if werr == nil && (!reflect.DeepEqual(got, want) && fmt.Sprintf("%#v", got) != fmt.Sprintf("%#v", want) || gcost != wcost) {
		t.Fatalf("%x: reference %#v (cost %d), decoder %#v (cost %d)", data, want, wcost, got, gcost)
	}
	if errors.Is(werr, ErrTooBig) != errors.Is(gerr, ErrTooBig) {
		t.Fatalf("%x: too big: reference %v, decoder %v", data, werr, gerr)
	}
}

func checkMsgpackEncoder(t *testing.T, v any) {
	t.Helper()
	want, werr := refMsgpackEncode(v)
	got, gerr := MsgPack.Encode(v)
	if (werr == nil) != (gerr == nil) {
		t.Fatalf("%#v: reference error %v, encoder error %v", v, werr, gerr)
	}
	if werr != nil {
		return
	}
	if !bytes.Equal(got, want) {
		// Maps are written in Go's map order, and wire structs with a map32
		// header: compare what they decode to.
		a, _, errA := refMsgpackDecode(got, MaxDecoded)
		b, _, errB := refMsgpackDecode(want, MaxDecoded)
		if errA != nil || errB != nil || fmt.Sprintf("%#v", a) != fmt.Sprintf("%#v", b) {
			t.Fatalf("%#v:\nreference %x\nencoder   %x", v, want, got)
		}
	}
}

var msgpackValues = []any{
	nil, true, false, int64(0), int64(127), int64(128), int64(255), int64(256), int64(65535), int64(65536),
	int64(math.MaxUint32), int64(math.MaxUint32 + 1), int64(math.MaxInt64), int64(-1), int64(-32), int64(-33),
	int64(-128), int64(-129), int64(-32768), int64(-32769), int64(math.MinInt32), int64(math.MinInt32 - 1), int64(math.MinInt64),
	uint64(math.MaxUint64), 0.5, -1.0, math.Inf(1), "", "short", strings.Repeat("s", 31), strings.Repeat("s", 32),
	strings.Repeat("s", 255), strings.Repeat("s", 256), strings.Repeat("s", 65536), "bad\xff", []byte(nil), []byte{},
	bytes.Repeat([]byte("b"), 256), bytes.Repeat([]byte("b"), 65536), []any{}, []any(nil), make([]any, 16),
	make([]any, 65536), map[string]any{}, map[string]any(nil), map[string]any{"a": int64(1), "b\xff": "x", "b\xfe": "y"},
	[]string{"x", "y"}, []int{1, 2}, struct{ A int }{1},
	&schema.Request{ID: "r", Cmds: []schema.Command{{Name: "a", Fun: "f", Args: []any{"x", int64(1)}, Locs: []string{"gpu"}}}},
	&schema.ExecReply{Result: map[string]any{"k": []any{1.5}}}, (*schema.Response)(nil),
}

func TestMsgpackMatchesReference(t *testing.T) {
	for _, v := range msgpackValues {
		checkMsgpackEncoder(t, v)
		if data, err := refMsgpackEncode(v); err == nil {
			checkMsgpackDecoder(t, data)
		}
	}
	for _, raw := range [][]byte{
		{}, {0xc1}, {0xc0, 0xc0}, {0x92, 0x01}, {0x81, 0x01, 0x02}, {0x81, 0xc4, 0x01, 'k', 0x02}, {0x81, 0xc4, 0x01, 0xff, 0x02},
		{0x81, 0xc0, 0x02}, {0x81, 0xcb, 0, 0, 0, 0, 0, 0, 0, 0, 0x02}, {0xdd, 0xff, 0xff, 0xff, 0xff}, {0xdf, 0, 0, 0, 5, 1},
		{0xca, 0x3f, 0x80, 0, 0}, {0xd4, 0xff, 0x01}, {0xd5, 0xff, 0, 1}, {0xd8, 0xff}, {0xc7, 0x0c, 0xff}, {0xc7, 0x0b, 0xff},
		{0xa3, 'a', 'b'}, {0xa2, 0xc3, 0x28}, {0xd9}, {0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
	} {
		checkMsgpackDecoder(t, raw)
	}
	for _, tm := range []string{"2026-11-29T19:00:00Z", "1969-01-01T00:00:00.5Z", "2500-01-01T00:00:00.000000001Z"} {
		at, err := time.Parse(time.RFC3339Nano, tm)
		if err != nil {
			t.Fatal(err)
		}
		data, err := msgpack.Marshal(at)
		if err != nil {
			t.Fatal(err)
		}
		checkMsgpackDecoder(t, data)
		checkMsgpackDecoder(t, append([]byte{0x91}, data...))
	}
	deep := append(bytes.Repeat([]byte{0x91}, 300), 0x01)
	checkMsgpackDecoder(t, deep)
}

func FuzzMsgpackMatchesReference(f *testing.F) {
	for _, v := range msgpackValues {
		if data, err := refMsgpackEncode(v); err == nil && len(data) < 4096 {
			f.Add(data)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkMsgpackDecoder(t, data)
		if v, _, err := refMsgpackDecode(data, MaxDecoded); err == nil {
			checkMsgpackEncoder(t, v)
		}
	})
}
