package codec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/stretchr/testify/require"

	"github.com/mpreg/mpreg/schema"
)

// bindCase binds in to a new value of type T and checks the result or the
// error text.
type bindCase struct {
	name    string
	run     func() (got any, err error)
	want    any
	wantErr string
}

func bc[T any](name string, in any, want T) bindCase {
	return bindCase{name: name, want: want, run: func() (any, error) { return Bind[T](in) }}
}

func bcErr[T any](name string, in any, wantErr string) bindCase {
	return bindCase{name: name, wantErr: wantErr, run: func() (any, error) { return Bind[T](in) }}
}

// TestBind pins the binding rules of Binder: encoding/json's, plus the
// ones its doc lists for what the value tree says beyond JSON text.
func TestBind(t *testing.T) {
	when := time.Date(2024, 1, 2, 3, 4, 5, 600, time.UTC)
	cases := []bindCase{
		// Numbers: ranges are checked; an integral value fits an integer
		// type however it was written.
		bc("int", int64(5), 5),
		bc("int from integral float", 2.0, 2),
		bc("int from exponent float", 1e2, 100),
		bc("int8", int64(-128), int8(-128)),
		bc("uint16", int64(65535), uint16(65535)),
		bc("uint64 max", uint64(math.MaxUint64), uint64(math.MaxUint64)),
		bc("uint64 from int64", int64(math.MaxInt64), uint64(math.MaxInt64)),
		bc("int64 min", int64(math.MinInt64), int64(math.MinInt64)),
		bc("float from int", int64(3), 3.0),
		bc("float32", 1.5, float32(1.5)),
		bc("float from uint64", uint64(math.MaxUint64), float64(math.MaxUint64)),
		bc("NaN into float64", math.NaN(), math.NaN()),
		bc("named int", int64(3), time.Duration(3)),
		// Strings, bools, binary.
		bc("string", "s", "s"),
		bc("bool", true, true),
		bc("named string", "NO_ROUTE", schema.CodeNoRoute),
		bc("bytes", []byte{1, 2}, []byte{1, 2}),
		bc("bytes from base64", "AQI=", []byte{1, 2}),
		bc("string from binary, as its base64", []byte("x"), "eA=="),
		bc("byte array from a list, as encoding/json", []any{int64(1), int64(2)}, [2]byte{1, 2}),
		bc("named byte slice", []byte{3}, []myByte{3}),
		// null leaves the value as it is.
		bc("int from null", nil, 0),
		bc("nil pointer", nil, (*int)(nil)),
		bc("nil bytes", nil, []byte(nil)),
		bc("nil slice", nil, []string(nil)),
		bc("nil map", nil, map[string]int(nil)),
		// The tree as it is for any, []any and map[string]any.
		bc("any keeps int64", []any{int64(1)}, any([]any{int64(1)})),
		bc("any keeps binary", []byte{1}, any([]byte{1})),
		bc("any nil", nil, any(nil)),
		bc("any slice", []any{"a", int64(1)}, []any{"a", int64(1)}),
		bc("any map", map[string]any{"a": nil, "n": int64(2)}, map[string]any{"a": nil, "n": int64(2)}),
		// Containers.
		bc("pointer", int64(5), intPtr(5)),
		bc("int slice", []any{int64(1), 2.0}, []int{1, 2}),
		bc("string slice", []any{"a", "b"}, []string{"a", "b"}),
		bc("empty slice", []any{}, []string{}),
		bc("nested slices", []any{[]any{int64(1)}, []any{}}, [][]int{{1}, {}}),
		bc("array", []any{int64(1), int64(2)}, [2]int{1, 2}),
		bc("string map", map[string]any{"a": int64(1)}, map[string]int{"a": 1}),
		bc("named key map", map[string]any{"a": "b"}, map[schema.Code]string{"a": "b"}),
		bc("int key map", map[string]any{"-1": "a", "2": "b"}, map[int]string{-1: "a", 2: "b"}),
		bc("text key map", map[string]any{"#010203": int64(1)}, map[color]int{{1, 2, 3}: 1}),
		bc("map of pointers", map[string]any{"a": int64(1)}, map[string]*int{"a": intPtr(1)}),
		// Structs, by encoding/json's rules.
		bc("struct, unknown key ignored", map[string]any{"x": int64(1), "y": int64(2), "z": "unknown"}, point{X: 1, Y: 2}),
		bc("struct case-insensitive", map[string]any{"X": int64(1)}, point{X: 1}),
		bc("struct pointer", map[string]any{"x": int64(4)}, &point{X: 4}),
		bc("embedded, string option, skipped and unexported fields",
			map[string]any{"id": "i", "extra": int64(3), "name": "n", "ptr": int64(5), "quoted": "12", "NoTag": 1.5, "secret": "s", "Hidden": int64(1)},
			outer{base: base{ID: "i"}, Extra: &Extra{Extra: 3}, Name: "n", Ptr: intPtr(5), Quoted: 12, NoTag: 1.5}),
		bc("nested", map[string]any{"id": "o", "items": []any{map[string]any{"name": "a", "qty": int64(2)}}},
			order{ID: "o", Items: []item{{"a", 2}}}),
		bc("any inside a struct is encoding/json's", map[string]any{"cmds": []any{map[string]any{"name": "a", "fun": "f", "args": []any{int64(1)}}}},
			schema.Request{Cmds: []schema.Command{{Name: "a", Fun: "f", Args: []any{1.0}}}}),
		bc("time", "2024-01-02T03:04:05.0000006Z", when),
		bc("json unmarshaler", map[string]any{"celsius": 21.5}, celsius(21.5)),
		bc("json unmarshaler pointer", map[string]any{"celsius": int64(3)}, func() *celsius { c := celsius(3); return &c }()),
		bc("text unmarshaler", "#0a0b0c", color{10, 11, 12}),
		bc("values outside the model", []int{1, 2}, []int64{1, 2}),

		bcErr[int]("int from string", "x", "want int, got string"),
		bcErr[int]("fraction", 1.5, "want int, got number 1.5"),
		bcErr[int]("infinite", math.Inf(1), "want int, got number: unsupported value: +Inf"),
		bcErr[int8]("int8 overflow", int64(300), "want int8, got number 300"),
		bcErr[int8]("int8 underflow", int64(-129), "want int8, got number -129"),
		bcErr[int64]("int64 from uint64 max", uint64(math.MaxUint64), "want int64, got number 18446744073709551615"),
		bcErr[int64]("int64 from huge float", 1e19, "want int64, got number 10000000000000000000"),
		bcErr[uint8]("negative uint", int64(-1), "want uint8, got number -1"),
		bcErr[uint]("negative float uint", -2.0, "want uint, got number -2"),
		bcErr[float32]("float32 overflow", 1e300, "want float32, got number 1e+300"),
		bcErr[float64]("float from string", "1", "want float64, got string"),
		bcErr[bool]("bool from number", int64(1), "want bool, got number"),
		bcErr[[]byte]("bad base64", "!!!", "want []uint8, got string: illegal base64 data at input byte 0"),
		bcErr[[]int]("slice from string", "x", "want []int, got string"),
		bcErr[[]int]("slice element", []any{int64(1), "x"}, "want int, got string"),
		bcErr[map[string]int]("map from list", []any{}, "want map[string]int, got list"),
		bcErr[map[string]int]("map value", map[string]any{"a": "b"}, "want int, got string"),
		bcErr[point]("struct from list", []any{}, "want codec.point, got list"),
		bcErr[point]("struct field", map[string]any{"x": "a"}, "x: want int, got string"),
		bcErr[order]("nested path", map[string]any{"items": []any{map[string]any{"name": "a"}, map[string]any{"name": int64(1)}}},
			"items.name: want string, got number"),
		bcErr[[]any]("any slice from a map", map[string]any{}, "want []interface {}, got map"),
		bcErr[time.Time]("time from number", int64(1), "want time.Time, got number: Time.UnmarshalJSON: input is not a JSON string"),
		bcErr[error]("interface with methods", "x", "want error, got string"),
		bcErr[int]("unsupported value", make(chan int), "want int, got chan int: unsupported type: chan int"),
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.run()
			if tc.wantErr != "" {
				var ae *AssignError
				require.ErrorAs(t, err, &ae)
				require.Equal(t, tc.wantErr, err.Error())
				return
			}
			require.NoError(t, err)
			if f, ok := tc.want.(float64); ok && math.IsNaN(f) {
				require.True(t, math.IsNaN(got.(float64)))
				return
			}
			require.Equal(t, tc.want, got)
		})
	}
}

func TestBindMethodErrors(t *testing.T) {
	_, err := Bind[celsius](map[string]any{})
	var ae *AssignError
	require.ErrorAs(t, err, &ae)
	require.EqualError(t, errors.Unwrap(err), "no celsius")

	_, err = Bind[time.Time]("yesterday")
	require.ErrorContains(t, err, `parsing time "yesterday"`)
	_, err = Bind[color]("red")
	require.ErrorContains(t, err, "input does not match format")
}

func TestBindErrorFields(t *testing.T) {
	_, err := Bind[order](map[string]any{"items": []any{map[string]any{}, map[string]any{}, map[string]any{"qty": "3"}}})
	var ae *AssignError
	require.ErrorAs(t, err, &ae)
	require.Equal(t, "items.qty", ae.Path)
	require.Equal(t, "int", ae.Want)
	require.Equal(t, "string", ae.Got)
	require.Equal(t, "b: "+ae.Error(), fmt.Sprintf("b: %v", err), "reads well after a parameter name")

	_, err = Bind[int]("x")
	require.ErrorAs(t, err, &ae)
	require.Empty(t, ae.Path)
}

func TestStrictBinder(t *testing.T) {
	b := NewBinder(reflect.TypeFor[outer]())
	b.Strict = true
	v, err := b.Bind(map[string]any{"id": "i", "EXTRA": int64(2)})
	require.NoError(t, err)
	require.Equal(t, outer{base: base{ID: "i"}, Extra: &Extra{Extra: 2}}, v.Interface())

	_, err = b.Bind(map[string]any{"id": "i", "age": int64(3)})
	require.ErrorIs(t, err, ErrUnknownField)
	var ae *AssignError
	require.ErrorAs(t, err, &ae)
	require.Equal(t, "age", ae.Path)

	_, err = NewBinder(reflect.TypeFor[outer]()).Bind(map[string]any{"age": int64(3)})
	require.NoError(t, err, "the lenient binder ignores it")
}

func TestBindCopiesBinary(t *testing.T) {
	src := []byte{1, 2}
	b, err := Bind[[]byte](src)
	require.NoError(t, err)
	b[0] = 9
	require.Equal(t, byte(1), src[0])
}

func TestBindDepth(t *testing.T) {
	deep := any(int64(1))
	for range MaxDepth + 2 {
		deep = []any{deep}
	}
	dst, err := Bind[any](deep)
	require.NoError(t, err, "any takes the tree as is")
	require.Equal(t, deep, dst)
	_, err = Bind[[]any](deep)
	require.NoError(t, err, "so does []any")
	typed, err := Bind[[][]any](deep)
	require.NoError(t, err, "typed values take what encoding/json takes")
	require.Len(t, typed, 1)
}

func TestBindScalarsWithoutText(t *testing.T) {
	vInt, vStr, vFloat := any(int64(1234567)), any("hello"), any(2.5)
	bInt, bI32 := NewBinder(reflect.TypeFor[int]()), NewBinder(reflect.TypeFor[int32]())
	bStr, bFloat := NewBinder(reflect.TypeFor[string]()), NewBinder(reflect.TypeFor[float64]())
	checks := map[string]func(){
		"int":    func() { _, _ = bInt.Bind(vInt) },
		"int32":  func() { _, _ = bI32.Bind(vInt) },
		"string": func() { _, _ = bStr.Bind(vStr) },
		"float":  func() { _, _ = bFloat.Bind(vFloat) },
	}
	for name, fn := range checks {
		require.LessOrEqual(t, testing.AllocsPerRun(100, fn), 1.0, name)
	}
}

// fuzzTarget has a field of each kind a binding meets.
type fuzzTarget struct {
	I   int            `json:"i"`
	I8  int8           `json:"i8"`
	U   uint16         `json:"u"`
	F   float64        `json:"f"`
	F32 float32        `json:"f32"`
	S   string         `json:"s"`
	B   bool           `json:"b"`
	Bs  []byte         `json:"bs"`
	L   []int          `json:"l"`
	M   map[string]int `json:"m"`
	MI  map[int]string `json:"mi"`
	P   *int           `json:"p"`
	A   any            `json:"a"`
	Q   int            `json:"q,string"`
	Arr [2]uint8       `json:"arr"`
	N   *fuzzTarget    `json:"n"`
	point
}

// FuzzBindMatchesEncodingJSON decodes JSON text with encoding/json and
// through the value tree with a Binder: where encoding/json succeeds, so
// must the binding, with an equal value; where it fails, the binding may
// succeed only by the integral-number rule.
func FuzzBindMatchesEncodingJSON(f *testing.F) {
	for _, s := range []string{
		`{"i":1,"i8":-128,"u":65535,"f":1.5,"f32":0.1,"s":"x","b":true,"bs":"AQI=","l":[1,2],"m":{"a":1},"mi":{"-1":"a"},"p":3,"a":{"k":[1,"x",null]},"q":"7","arr":[1,2],"n":{"i":2},"x":5,"Y":6}`,
		`{"i":1.0,"u":-0,"i8":1e2,"p":null,"I":2,"bs":null}`,
		`{"i":"1","f":"x","q":5,"arr":[1,2,3],"l":{}}`,
		`{"i8":300,"u":1e21,"f32":1e300,"a":18446744073709551615}`,
		`null`, `[]`, `{"n":{"n":{"n":{}}}}`,
	} {
		f.Add([]byte(s))
	}
	b := NewBinder(reflect.TypeFor[fuzzTarget]())
	f.Fuzz(func(t *testing.T, data []byte) {
		var want fuzzTarget
		errJSON := json.Unmarshal(data, &want)
		tree, err := JSON.Decode(data)
		if err != nil || hasFoldedKeys(data) {
			return // not JSON, past a bound, or keys whose order decides
		}
		got, errBind := b.Bind(tree)
		switch {
		case errJSON == nil:
			require.NoError(t, errBind, "%s", data)
			require.Equal(t, want, got.Interface(), "%s", data)
		case errBind == nil:
			var te *json.UnmarshalTypeError
			require.ErrorAs(t, errJSON, &te, "%s: encoding/json: %v", data, errJSON)
			n, ok := strings.CutPrefix(te.Value, "number ")
			require.True(t, ok, "%s: encoding/json: %v", data, errJSON)
			x, err := strconv.ParseFloat(n, 64)
			require.NoError(t, err)
			require.Equal(t, math.Trunc(x), x, "%s: only integral numbers may differ", data)
		}
	})
}

// hasFoldedKeys reports whether an object in the JSON text has two keys
// equal under case folding (or equal): which one a struct field takes, or
// how encoding/json merges them, depends on their order, and a decoded
// tree keeps one key once and no order.
func hasFoldedKeys(data []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(data))
	type level struct {
		object bool
		key    bool // the next string token is a key
		seen   map[string]bool
	}
	var stack []*level
	for {
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		var top *level
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if top != nil && top.object && top.key {
			if d, ok := tok.(json.Delim); ok && d == '}' {
				stack = stack[:len(stack)-1]
				continue
			}
			k := foldKey(tok.(string))
			if top.seen[k] {
				return true
			}
			top.seen[k], top.key = true, false
			continue
		}
		if top != nil && top.object {
			top.key = true // this token is a value
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &level{object: true, key: true, seen: map[string]bool{}})
		case json.Delim('['):
			stack = append(stack, &level{})
		case json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
	}
}

// foldKey maps each rune to the smallest of its case-folding orbit.
func foldKey(s string) string {
	var b strings.Builder
	for _, r := range s {
		m := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			m = min(m, f)
		}
		b.WriteRune(m)
	}
	return b.String()
}

func BenchmarkBindInt(b *testing.B) {
	v := any(int64(42))
	bd := NewBinder(reflect.TypeFor[int]())
	b.ReportAllocs()
	for b.Loop() {
		if _, err := bd.Bind(v); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBindStruct(b *testing.B) {
	v := map[string]any{"id": "o", "items": []any{map[string]any{"name": "a", "qty": int64(2)}, map[string]any{"name": "b", "qty": int64(3)}}}
	bd := NewBinder(reflect.TypeFor[order]())
	b.ReportAllocs()
	for b.Loop() {
		if _, err := bd.Bind(v); err != nil {
			b.Fatal(err)
		}
	}
}
