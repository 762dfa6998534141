package codec

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/mpreg/mpreg/schema"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var codecs = []Codec{JSON, MsgPack}

func roundTrip(t *testing.T, c Codec, v any) any {
	t.Helper()
	b, err := c.Encode(v)
	require.NoError(t, err, "%s encode %#v", c.ContentType(), v)
	out, err := c.Decode(b)
	require.NoError(t, err, "%s decode %q", c.ContentType(), b)
	return out
}

func TestRoundTripIntegers(t *testing.T) {
	ints := []int64{
		0, 1, -1, 127, 128, 255, 256, -32, -33, -128, -129, 65535, 65536,
		1 << 31, -1 << 31, 1<<32 + 1, 1<<53 + 1, 1<<62 + 1, -(1<<62 + 1),
		math.MaxInt64, math.MinInt64, math.MaxInt64 - 1,
	}
	for _, c := range codecs {
		t.Run(c.ContentType(), func(t *testing.T) {
			for _, n := range ints {
				got := roundTrip(t, c, n)
				require.IsType(t, int64(0), got, "%d", n)
				require.Equal(t, n, got)

				got = roundTrip(t, c, map[string]any{"n": n, "l": []any{n}})
				require.Equal(t, map[string]any{"n": n, "l": []any{n}}, got)
			}
			for _, u := range []uint64{math.MaxUint64, math.MaxInt64 + 1, math.MaxUint64 - 1} {
				got := roundTrip(t, c, u)
				require.IsType(t, uint64(0), got)
				require.Equal(t, u, got)
			}
			// A uint64 that fits int64 comes back as int64: the model has
			// one integer type below MaxInt64.
			require.Equal(t, int64(5), roundTrip(t, c, uint64(5)))
			require.Equal(t, int64(7), roundTrip(t, c, int8(7)))
		})
	}
}

func TestRoundTripFloats(t *testing.T) {
	floats := []float64{
		0, 1, -1, 2, 1.5, -2.25, 0.1, 1e21, 1e20, 5e18, 1e-7, 1e-6, 1e300, -1e300,
		math.MaxFloat64, math.SmallestNonzeroFloat64, math.Pi, 123456789,
		float64(math.MaxInt64), 1 << 53,
	}
	for _, c := range codecs {
		t.Run(c.ContentType(), func(t *testing.T) {
			for _, f := range floats {
				got := roundTrip(t, c, f)
				require.IsType(t, float64(0), got, "%v", f)
				require.Equal(t, f, got)
			}
			require.Equal(t, 1.5, roundTrip(t, c, float32(1.5)))
			neg := roundTrip(t, c, math.Copysign(0, -1)).(float64)
			require.True(t, math.Signbit(neg), "-0 keeps its sign")
		})
	}
}

func TestJSONWholeFloatsKeepAFraction(t *testing.T) {
	b, err := JSON.Encode(map[string]any{"f": 1.0, "i": int64(1), "e": 1e21, "s": 1e-7})
	require.NoError(t, err)
	require.Equal(t, `{"e":1e+21,"f":1.0,"i":1,"s":1e-7}`, string(b))
}

func TestNonFiniteFloats(t *testing.T) {
	for _, f := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		_, err := JSON.Encode(f)
		require.Error(t, err, "JSON cannot carry %v", f)

		got := roundTrip(t, MsgPack, f)
		if math.IsNaN(f) {
			require.True(t, math.IsNaN(got.(float64)))
		} else {
			require.Equal(t, f, got)
		}
	}
}

func TestRoundTripBinary(t *testing.T) {
	for _, orig := range [][]byte{{0, 1, 2, 0xff, '"', '\\'}, {}, bytes.Repeat([]byte{0xab}, 70000)} {
		got := roundTrip(t, MsgPack, orig)
		require.IsType(t, []byte(nil), got)
		require.Equal(t, orig, got)

		got = roundTrip(t, JSON, orig)
		require.Equal(t, base64.StdEncoding.EncodeToString(orig), got)
		b, err := Bind[[]byte](got)
		require.NoError(t, err)
		require.Equal(t, orig, b)

		// And inside a tree, into a typed struct.
		for _, c := range codecs {
			dst, err := Bind[struct {
				Data []byte `json:"data"`
			}](roundTrip(t, c, map[string]any{"data": orig}))
			require.NoError(t, err)
			require.Equal(t, orig, dst.Data)
		}
	}
}

func TestRoundTripNested(t *testing.T) {
	tree := map[string]any{
		"list":  []any{int64(1), "x", nil, true, false, 1.5, []any{}, map[string]any{"deep": []any{[]any{int64(-3)}}}},
		"empty": map[string]any{},
		"str":   "héllo \u2028 \"q\" \\ \x01 \t <&>",
		"":      "empty key",
		"uint":  uint64(math.MaxUint64),
	}
	for _, c := range codecs {
		require.Equal(t, tree, roundTrip(t, c, tree), c.ContentType())
	}
}

func TestRoundTripWireTypes(t *testing.T) {
	req := &schema.Request{
		ID: "r1",
		Cmds: []schema.Command{
			{Name: "|first", Fun: "echo", Args: []any{"hi there!"}},
			{Name: "|second", Fun: "echo", Args: []any{"|first"}},
			{Name: "|third", Fun: "echos", Args: []any{"|first", "AND ME TOO"},
				Kwargs: map[string]any{"n": int64(1 << 60)}, Locs: []string{"dataset-a"}},
		},
		TimeoutMS:  5000,
		DeadlineMS: 1732570005123,
		Results:    schema.ResultsAll,
	}
	for _, c := range codecs {
		got, err := schema.ParseRequest(roundTrip(t, c, req))
		require.NoError(t, err)
		require.Equal(t, req, got)

		resp := &schema.Response{ID: "r1", Results: map[string]any{"|first": "hi"},
			Error: &schema.Error{Code: schema.CodeNoRoute, Message: "no", Step: "|third",
				Details: map[string]any{"locs": []any{"gpu"}}}}
		gotResp, err := schema.ParseResponse(roundTrip(t, c, resp))
		require.NoError(t, err)
		require.Equal(t, resp, gotResp)
	}
}

// The JSON encoder follows encoding/json (without HTML escaping) byte for
// byte on the value model, whole floats aside; other values, struct keys
// sorted, decode to what encoding/json's text decodes to.
func TestJSONEncodeMatchesEncodingJSON(t *testing.T) {
	type Base struct {
		ID   string `json:"id"`
		Skip string `json:"-"`
	}
	type withEmbedded struct {
		Base
		Name  string          `json:"name,omitempty"`
		Count int             `json:"count"`
		When  time.Time       `json:"when"`
		Raw   json.RawMessage `json:"raw"`
		Any   any             `json:"any"`
		Quote int             `json:"quote,string"`
	}
	model := []any{
		"plain",
		"ctl \x00\x01\x1f \b\f\n\r\t \"\\ / <>& \u2028\u2029 é 😀",
		"bad utf8 \xff\xfe end",
		[]any{nil, true, int64(-5), "a", []byte("bin"), 0.5, 1e-9, 1.5e300},
		map[string]any{"b": int64(1), "a": int64(2), "é": "x", "\n": "y"},
	}
	typed := []any{
		&schema.Error{Code: schema.CodeNoRoute, Message: "m", Details: map[string]any{"x": []any{}}},
		schema.Command{Name: "n", Fun: "f"},
		withEmbedded{Base: Base{ID: "i", Skip: "s"}, Count: 3, When: time.Date(2024, 1, 2, 3, 4, 5, 6, time.UTC),
			Raw: json.RawMessage(`{"z":[1,2]}`), Any: []any{"x"}, Quote: 7},
	}
	for i, v := range append(model, typed...) {
		var want bytes.Buffer
		enc := json.NewEncoder(&want)
		enc.SetEscapeHTML(false)
		require.NoError(t, enc.Encode(v))
		got, err := JSON.Encode(v)
		require.NoError(t, err)
		if i < len(model) {
			require.Equal(t, strings.TrimSuffix(want.String(), "\n"), string(got))
			continue
		}
		wantTree, err := JSON.Decode(want.Bytes())
		require.NoError(t, err)
		gotTree, err := JSON.Decode(got)
		require.NoError(t, err)
		require.Equal(t, wantTree, gotTree, "%T", v)
	}
}

func TestEncodeErrors(t *testing.T) {
	cyclic := map[string]any{}
	cyclic["self"] = cyclic
	for _, v := range []any{make(chan int), func() {}, complex(1, 2), cyclic, map[string]any{"a": []any{math.NaN()}}} {
		_, err := JSON.Encode(v)
		require.Error(t, err, "%T", v)
	}
}

func TestNegotiate(t *testing.T) {
	cases := []struct {
		name, ct, accept string
		req, reply       Codec
		errHeader        string
	}{
		{name: "empty means JSON", req: JSON, reply: JSON},
		{name: "json with charset", ct: "application/json; charset=utf-8", req: JSON, reply: JSON},
		{name: "msgpack", ct: MsgPackType, req: MsgPack, reply: MsgPack},
		{name: "msgpack case and spaces", ct: " Application/MsgPack ", req: MsgPack, reply: MsgPack},
		{name: "x-msgpack alias", ct: "application/x-msgpack", req: MsgPack, reply: MsgPack},
		{name: "accept any", ct: MsgPackType, accept: "*/*", req: MsgPack, reply: MsgPack},
		{name: "accept application any", accept: "application/*", req: JSON, reply: JSON},
		{name: "accept msgpack with JSON body", ct: JSONType, accept: MsgPackType, req: JSON, reply: MsgPack},
		{name: "accept json with msgpack body", ct: MsgPackType, accept: "application/json;q=1", req: MsgPack, reply: JSON},
		{name: "unknown content type", ct: "application/xml", reply: JSON, errHeader: "Content-Type"},
		{name: "unknown accept", ct: MsgPackType, accept: "text/plain", req: MsgPack, reply: MsgPack, errHeader: "Accept"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, reply, err := Negotiate(tc.ct, tc.accept)
			require.Equal(t, tc.req, req)
			require.Equal(t, tc.reply, reply)
			if tc.errHeader == "" {
				require.Nil(t, err)
				return
			}
			require.NotNil(t, err)
			require.ErrorIs(t, err, schema.ErrUnsupportedCodec)
			e := schema.AsError(err)
			require.Contains(t, e.Message, tc.errHeader)
			require.Equal(t, map[string]any{"supported": []any{MsgPackType, JSONType}}, e.Details)
		})
	}
}

func TestPreferred(t *testing.T) {
	require.Equal(t, MsgPack, Preferred(SupportedTypes()))
	require.Equal(t, MsgPack, Preferred([]string{JSONType, MsgPackType}))
	require.Equal(t, JSON, Preferred([]string{JSONType}))
	require.Equal(t, JSON, Preferred([]string{"application/cbor"}))
	require.Equal(t, JSON, Preferred(nil))
	require.Equal(t, []string{MsgPackType, JSONType}, SupportedTypes())
	for i, c := range Supported {
		require.Equal(t, c.ContentType(), SupportedTypes()[i], "SupportedTypes follows Supported")
	}
	_, _, err := Negotiate("application/cbor", "")
	require.Equal(t, []any{MsgPackType, JSONType}, schema.AsError(err).Details.(map[string]any)["supported"])
}

func nested(open, closing string, n int) []byte {
	return []byte(strings.Repeat(open, n) + strings.Repeat(closing, n))
}

func TestJSONDecodeErrors(t *testing.T) {
	cases := map[string][]byte{
		"empty":            nil,
		"malformed":        []byte(`{"a":`),
		"bad token":        []byte(`{"a": tru}`),
		"trailing comma":   []byte(`[1,]`),
		"trailing data":    []byte(`{"a":1} x`),
		"two values":       []byte(`{} {}`),
		"trailing bracket": []byte(`[1]]`),
		"too deep list":    nested("[", "]", MaxDepth+2),
		"too deep map":     []byte(strings.Repeat(`{"a":`, MaxDepth+2) + "1" + strings.Repeat("}", MaxDepth+2)),
		"very deep":        nested("[", "]", 20000),
		"number overflow":  []byte(`[1e400]`),
	}
	for name, data := range cases {
		_, err := JSON.Decode(data)
		require.Error(t, err, name)
		require.ErrorIs(t, err, ErrDecode, name)
	}
	for _, ok := range [][]byte{nested("[", "]", MaxDepth+1), []byte(" {} \n"), []byte(`"\ud800"`)} {
		_, err := JSON.Decode(ok)
		require.NoError(t, err, "%.40q", ok)
	}
}

func TestJSONDecodeNumbers(t *testing.T) {
	v, err := JSON.Decode([]byte(`[1, -1, 1.0, 1e2, 9223372036854775807, 9223372036854775808, 18446744073709551616, -0]`))
	require.NoError(t, err)
	require.Equal(t, []any{int64(1), int64(-1), 1.0, 100.0, int64(math.MaxInt64),
		uint64(math.MaxInt64 + 1), 18446744073709551616.0, int64(0)}, v)
}

// mp encodes a value with the msgpack codec for building test inputs.
func mp(t *testing.T, v any) []byte {
	t.Helper()
	b, err := MsgPack.Encode(v)
	require.NoError(t, err)
	return b
}

func TestMsgPackDecodeErrors(t *testing.T) {
	valid := mp(t, map[string]any{"cmds": []any{map[string]any{"name": "a", "fun": "f", "args": []any{int64(1), "x", []byte{1}, 2.5}}}})
	for i := range len(valid) {
		_, err := MsgPack.Decode(valid[:i])
		require.Error(t, err, "truncated to %d of %d bytes", i, len(valid))
		require.ErrorIs(t, err, ErrDecode)
	}
	_, err := MsgPack.Decode(valid)
	require.NoError(t, err)

	cases := map[string][]byte{
		"trailing data":   append(append([]byte{}, valid...), 0xc0),
		"unused code":     {0xc1},
		"too deep":        append(bytes.Repeat([]byte{0x91}, MaxDepth+2), 0xc0),
		"bool key":        {0x81, 0xc3, 0x01},
		"nil key":         {0x81, 0xc0, 0x01},
		"float key":       {0x81, 0xcb, 0, 0, 0, 0, 0, 0, 0, 0, 0x01},
		"list key":        {0x81, 0x91, 0x01, 0x01},
		"map key":         {0x81, 0x80, 0x01},
		"unknown ext":     {0xd4, 0x05, 0x00},
		"bad time ext":    {0xc7, 0x03, 0xff, 0, 0, 0},
		"short str":       {0xa5, 'a', 'b'},
		"short bin":       {0xc4, 0x05, 1, 2},
		"short float":     {0xcb, 0, 0},
		"short int":       {0xd2, 0, 0},
		"deep map values": append(bytes.Repeat([]byte{0x81, 0xa1, 'k'}, MaxDepth+2), 0xc0),
		"str not UTF-8":   {0xa2, '0', 0xbf},
		"key not UTF-8":   {0x81, 0xa2, '0', 0xbf, 0x01},
	}
	for name, data := range cases {
		_, err := MsgPack.Decode(data)
		require.Error(t, err, name)
		require.ErrorIs(t, err, ErrDecode, name)
	}

	v, err := MsgPack.Decode(append(bytes.Repeat([]byte{0x91}, MaxDepth), 0xc0))
	require.NoError(t, err, "nesting at the limit")
	require.NotNil(t, v)
	v, err = MsgPack.Decode([]byte{0x82, 0x01, 0xa1, 'a', 0xc4, 0x01, 'b', 0x02})
	require.NoError(t, err, "integer and binary keys become strings")
	require.Equal(t, map[string]any{"1": "a", "b": int64(2)}, v)
}

// A string that is not UTF-8 (a Go handler may return one) is sent by both
// codecs with each bad byte as U+FFFD, so the two carry the same text and
// the MessagePack peer receives a valid str.
func TestInvalidUTF8EncodesAsReplacement(t *testing.T) {
	bad := "a\xbf\xffb"
	want := "a\uFFFD\uFFFDb"
	for _, c := range []Codec{JSON, MsgPack} {
		b, err := c.Encode(map[string]any{bad: []any{bad}})
		require.NoError(t, err, c.ContentType())
		v, err := c.Decode(b)
		require.NoError(t, err, c.ContentType())
		require.Equal(t, map[string]any{want: []any{want}}, v, c.ContentType())
	}
	// Keys that differ only in bad bytes collide the same way in both.
	for range 5 {
		m := map[string]any{"k\xff": int64(1), "k\xfe": int64(2), "ok": int64(3)}
		jb, err := JSON.Encode(m)
		require.NoError(t, err)
		jv, err := JSON.Decode(jb)
		require.NoError(t, err)
		mb, err := MsgPack.Encode(m)
		require.NoError(t, err)
		mv, err := MsgPack.Decode(mb)
		require.NoError(t, err)
		require.Equal(t, map[string]any{"k\uFFFD": int64(1), "ok": int64(3)}, mv)
		require.Equal(t, jv, mv)
	}
	// Every wire struct, in both codecs, decodes to the same tree.
	wire := []any{
		&schema.Error{Code: schema.CodeFunctionError, Message: bad, Details: map[string]any{"k": []string{bad}}},
		schema.ExecError{Error: &schema.Error{Code: schema.CodeFunctionError, Message: bad}},
		schema.ExecResult{Result: bad},
		&schema.Response{ID: bad, Results: map[string]any{bad: bad}, Error: &schema.Error{Code: schema.CodeInternal, Message: bad}},
		&schema.Request{ID: "r", Cmds: []schema.Command{{Name: "a", Fun: "f", Args: []any{bad}, Locs: []string{bad}}}},
		&schema.Hello{Cluster: "c", Node: bad, Funs: map[string][]string{"f": {bad}}, Meta: map[string]string{bad: bad}},
	}
	for _, w := range wire {
		jb, err := JSON.Encode(w)
		require.NoError(t, err)
		jv, err := JSON.Decode(jb)
		require.NoError(t, err)
		mb, err := MsgPack.Encode(w)
		require.NoError(t, err, "%T", w)
		mv, err := MsgPack.Decode(mb)
		require.NoError(t, err, "%T", w)
		require.Equal(t, jv, mv, "%T", w)
		require.Contains(t, fmt.Sprint(mv), want, "%T", w)
	}
}

// Length headers that claim far more than the input holds must fail before
// allocating anything of that size.
func TestMsgPackHugeHeaders(t *testing.T) {
	cases := map[string][]byte{
		"array32":  {0xdd, 0xff, 0xff, 0xff, 0xff, 0x01, 0x02},
		"array16":  {0xdc, 0xff, 0xff, 0x01},
		"map32":    {0xdf, 0xff, 0xff, 0xff, 0xff, 0xa1, 'a', 0x01},
		"str32":    {0xdb, 0xff, 0xff, 0xff, 0xff, 'a', 'b'},
		"bin32":    {0xc6, 0xff, 0xff, 0xff, 0xff, 1, 2, 3},
		"ext32":    {0xc9, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0},
		"nested":   {0x91, 0x91, 0xdd, 0xff, 0xff, 0xff, 0xf0, 0xc0},
		"map list": {0x81, 0xa1, 'k', 0xdd, 0x80, 0x00, 0x00, 0x00, 0xc0},
	}
	for name, data := range cases {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		start := time.Now()
		for range 10 {
			_, err := MsgPack.Decode(data)
			require.Error(t, err, name)
		}
		runtime.ReadMemStats(&after)
		require.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(1<<20), "%s allocated too much", name)
		require.Less(t, time.Since(start), time.Second, name)
	}
}

func TestMsgPackExtTime(t *testing.T) {
	when := time.Date(2024, 5, 6, 7, 8, 9, 10, time.UTC)
	v, err := MsgPack.Decode(mp(t, when))
	require.NoError(t, err)
	require.Equal(t, when.Format(time.RFC3339Nano), v)
	got, err := Bind[time.Time](v)
	require.NoError(t, err)
	require.True(t, when.Equal(got))
}

func TestByType(t *testing.T) {
	for _, ct := range []string{"", "application/json", "text/json", "application/json; charset=utf-8"} {
		c, ok := ByType(ct)
		require.True(t, ok, ct)
		require.Equal(t, JSON, c)
	}
	for _, ct := range []string{MsgPackType, "application/vnd.msgpack", "application/x-msgpack"} {
		c, ok := ByType(ct)
		require.True(t, ok, ct)
		require.Equal(t, MsgPack, c)
	}
	_, ok := ByType("application/cbor")
	require.False(t, ok)
}

func TestDecodeErrorWrapping(t *testing.T) {
	_, err := JSON.Decode([]byte("{"))
	require.True(t, errors.Is(err, ErrDecode))
	require.Contains(t, err.Error(), JSONType)
	_, err = MsgPack.Decode([]byte{0xc1})
	require.True(t, errors.Is(err, ErrDecode))
	require.Contains(t, err.Error(), MsgPackType)
}

// The wire structs of the call path are written without reflection in
// MessagePack; they must decode to the same tree as their JSON form.
func TestMsgPackWireStructsMatchJSON(t *testing.T) {
	for name, v := range map[string]any{
		"exec request": &schema.ExecRequest{Cluster: "c", ID: "r/s", Fun: "f",
			Args: []any{"x", int64(1), []any{true, nil}}, Kwargs: map[string]any{"k": map[string]any{"n": int64(-3)}}, DeadlineMS: 1732570000123},
		"exec request, nil args, no deadline": &schema.ExecRequest{Cluster: "c", ID: "r/s", Fun: "f"},
		"result":                              schema.ExecResult{Result: map[string]any{"a": []any{"b"}}},
		"null result":                         schema.ExecResult{},
		"error":                               schema.ExecError{Error: &schema.Error{Code: schema.CodeNoRoute, Message: "m", Step: "s", Node: "n", Details: map[string]any{"fun": "f"}}},
		"error, no extras":                    schema.ExecError{Error: &schema.Error{Code: schema.CodeTimeout, Message: "t"}},
		"response":                            &schema.Response{ID: "x", Results: map[string]any{"a": int64(1)}},
		"response with error, nil results":    &schema.Response{ID: "x", Error: &schema.Error{Code: schema.CodeTimeout, Message: "t", Step: "a"}},
		"request": &schema.Request{ID: "r", TimeoutMS: 500, DeadlineMS: 1732570005123, Results: "all", Cmds: []schema.Command{
			{Name: "a", Fun: "f", Args: []any{int64(1), "b"}, Kwargs: map[string]any{"k": map[string]any{"n": nil}}, Locs: []string{"gpu", "x"}},
			{Name: "b", Fun: "g", Args: []any{}, Kwargs: map[string]any{}, Locs: []string{}},
		}},
		"request, bare":           &schema.Request{Cmds: []schema.Command{{Name: "a", Fun: "f"}}},
		"request, nil cmds":       &schema.Request{},
		"hello via reflection":    &schema.Hello{Cluster: "c", Node: "n", Incarnation: 1, Version: 2, Funs: map[string][]string{"f": {"gpu"}}, Meta: map[string]string{"a": "b"}},
		"heartbeat by value":      schema.Heartbeat{Cluster: "c", Node: "n", Incarnation: 1, Version: 2, Seq: 3, Load: schema.Load{Inflight: 4, Limit: 5}},
		"any model value, nested": map[string]any{"a": []any{uint64(1 << 63), 1.5, false, nil, "x"}},
	} {
		t.Run(name, func(t *testing.T) {
			jb, err := JSON.Encode(v)
			require.NoError(t, err)
			want, err := JSON.Decode(jb)
			require.NoError(t, err)
			mb, err := MsgPack.Encode(v)
			require.NoError(t, err)
			got, err := MsgPack.Decode(mb)
			require.NoError(t, err)
			require.Equal(t, want, got)
		})
	}
}
