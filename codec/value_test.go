package codec

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mpreg/mpreg/schema"
)

type point struct {
	X int `json:"x"`
	Y int `json:"y,omitempty"`
}

type base struct {
	ID string `json:"id"`
}

// Extra is exported so that Assign can allocate it when embedded by pointer.
type Extra struct {
	Extra int `json:"extra"`
}

type hiddenExtra struct {
	Extra int `json:"extra"`
}

type withHidden struct {
	*hiddenExtra
}

type outer struct {
	base
	*Extra
	Name   string  `json:"name"`
	Hidden int     `json:"-"`
	Ptr    *int    `json:"ptr,omitempty"`
	Quoted int64   `json:"quoted,string"`
	NoTag  float64 // keyed by the Go name
	secret string
}

type item struct {
	Name string `json:"name"`
	Qty  int    `json:"qty"`
}

type order struct {
	ID    string `json:"id"`
	Items []item `json:"items"`
}

// celsius marshals as JSON through a method.
type celsius float64

func (c celsius) MarshalJSON() ([]byte, error) {
	return []byte(`{"celsius":` + strconv.FormatFloat(float64(c), 'f', -1, 64) + `}`), nil
}

func (c *celsius) UnmarshalJSON(b []byte) error {
	var v struct{ Celsius *float64 }
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	if v.Celsius == nil {
		return errors.New("no celsius")
	}
	*c = celsius(*v.Celsius)
	return nil
}

// color marshals as text.
type color struct{ r, g, b uint8 }

func (c color) MarshalText() ([]byte, error) {
	return fmt.Appendf(nil, "#%02x%02x%02x", c.r, c.g, c.b), nil
}

func (c *color) UnmarshalText(b []byte) error {
	_, err := fmt.Sscanf(string(b), "#%02x%02x%02x", &c.r, &c.g, &c.b)
	return err
}

func intPtr(n int) *int { return &n }

type myByte uint8

func TestNormalize(t *testing.T) {
	when := time.Date(2024, 1, 2, 3, 4, 5, 600, time.UTC)
	type code string
	cases := []struct {
		name string
		in   any
		want any
	}{
		{"nil", nil, nil},
		{"bool", true, true},
		{"string", "s", "s"},
		{"int", 5, int64(5)},
		{"int8", int8(-3), int64(-3)},
		{"int32", int32(math.MinInt32), int64(math.MinInt32)},
		{"uint8", uint8(200), int64(200)},
		{"uint", uint(7), int64(7)},
		{"uint64 small", uint64(9), int64(9)},
		{"uint64 max", uint64(math.MaxUint64), uint64(math.MaxUint64)},
		{"float32", float32(1.5), 1.5},
		{"float64", 2.0, 2.0},
		{"inf", math.Inf(1), math.Inf(1)},
		{"bytes", []byte{1, 2}, []byte{1, 2}},
		{"named string", code("x"), "x"},
		{"int slice", []int{1, 2}, []any{int64(1), int64(2)}},
		{"string slice", []string{"a", "b"}, []any{"a", "b"}},
		{"nil slice", []int(nil), nil},
		{"byte array", [3]byte{1, 2, 3}, []byte{1, 2, 3}},
		{"named byte array", [2]myByte{6, 7}, []byte{6, 7}},
		{"named byte slice", []myByte{8}, []byte{8}},
		{"int array", [2]int{4, 5}, []any{int64(4), int64(5)}},
		{"string map", map[string]int{"a": 1}, map[string]any{"a": int64(1)}},
		{"string-kind keys", map[code]string{"k": "v"}, map[string]any{"k": "v"}},
		{"int keys", map[int]bool{-1: true}, map[string]any{"-1": true}},
		{"uint keys", map[uint16]string{7: "x"}, map[string]any{"7": "x"}},
		{"text keys", map[color]int{{1, 2, 3}: 1}, map[string]any{"#010203": int64(1)}},
		{"map of strings", map[string]string{"a": "b"}, map[string]any{"a": "b"}},
		{"nil map", map[string]int(nil), nil},
		{"pointer", intPtr(3), int64(3)},
		{"nil pointer", (*int)(nil), nil},
		{"pointer to pointer", func() **int { p := intPtr(4); return &p }(), int64(4)},
		{"time", when, "2024-01-02T03:04:05.0000006Z"},
		{"json int", json.Number("12"), int64(12)},
		{"json float", json.Number("1.5"), 1.5},
		{"json big", json.Number("18446744073709551615"), uint64(math.MaxUint64)},
		{"raw message", json.RawMessage(`{"a":[1,2.5]}`), map[string]any{"a": []any{int64(1), 2.5}}},
		{"json marshaler", celsius(21.5), map[string]any{"celsius": 21.5}},
		{"text marshaler", color{255, 0, 16}, "#ff0010"},
		{"struct", point{X: 1, Y: 2}, map[string]any{"x": int64(1), "y": int64(2)}},
		{"omitempty", point{X: 1}, map[string]any{"x": int64(1)}},
		{"struct pointer", &point{X: 3}, map[string]any{"x": int64(3)}},
		{"embedded", outer{base: base{ID: "i"}, Name: "n", Hidden: 9, Quoted: 12, NoTag: 0.5, secret: "s"},
			map[string]any{"id": "i", "name": "n", "quoted": "12", "NoTag": 0.5}},
		{"embedded pointer", outer{Extra: &Extra{Extra: 2}, Ptr: intPtr(8)},
			map[string]any{"id": "", "extra": int64(2), "name": "", "ptr": int64(8), "quoted": "0", "NoTag": 0.0}},
		{"nested structs", order{ID: "o", Items: []item{{"a", 1}}},
			map[string]any{"id": "o", "items": []any{map[string]any{"name": "a", "qty": int64(1)}}}},
		{"schema error", &schema.Error{Code: schema.CodeNoRoute, Message: "m", Details: map[string]any{"n": 1}},
			map[string]any{"code": "NO_ROUTE", "message": "m", "details": map[string]any{"n": int64(1)}}},
		{"model list with ints", []any{1, "a", []any{uint8(2)}}, []any{int64(1), "a", []any{int64(2)}}},
		{"model map with ints", map[string]any{"a": 1, "b": map[string]any{"c": int16(2)}},
			map[string]any{"a": int64(1), "b": map[string]any{"c": int64(2)}}},
		{"list of typed values", []any{point{X: 1}, &when}, []any{map[string]any{"x": int64(1)}, "2024-01-02T03:04:05.0000006Z"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Normalize(tc.in)
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

func TestNormalizeNaN(t *testing.T) {
	got, err := Normalize([]any{math.NaN(), float32(math.NaN())})
	require.NoError(t, err)
	for _, f := range got.([]any) {
		require.True(t, math.IsNaN(f.(float64)))
	}
}

func TestNormalizeKeepsModelValues(t *testing.T) {
	list := []any{int64(1), "a", map[string]any{"b": []any{nil, 1.5}}}
	got, err := Normalize(list)
	require.NoError(t, err)
	require.Equal(t, reflect.ValueOf(list).Pointer(), reflect.ValueOf(got).Pointer(), "no copy of a normalized list")

	boxed := any(list)
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := Normalize(boxed); err != nil {
			panic(err)
		}
	})
	require.Zero(t, allocs)

	// A conversion copies and leaves the input alone.
	in := []any{int64(1), 2}
	got, err = Normalize(in)
	require.NoError(t, err)
	require.Equal(t, []any{int64(1), int64(2)}, got)
	require.Equal(t, 2, in[1])
	m := map[string]any{"a": uint(3)}
	got, err = Normalize(m)
	require.NoError(t, err)
	require.Equal(t, map[string]any{"a": int64(3)}, got)
	require.Equal(t, uint(3), m["a"])
}

func TestNormalizeErrors(t *testing.T) {
	deep := any("leaf")
	for range MaxDepth + 1 {
		deep = []any{deep}
	}
	cyclic := map[string]any{}
	cyclic["self"] = cyclic
	type node struct {
		Next *node `json:"next"`
	}
	loop := &node{}
	loop.Next = loop
	cases := []struct {
		name string
		in   any
		msg  string
	}{
		{"chan", make(chan int), "unsupported type chan int"},
		{"func", func() {}, "unsupported type func()"},
		{"complex", complex(1, 2), "unsupported type complex128"},
		{"float keys", map[float64]int{1: 1}, "unsupported map key type float64"},
		{"path", map[string]any{"a": []any{1, make(chan int)}}, "a[1]: unsupported type chan int"},
		{"struct path", struct {
			F []any `json:"f"`
		}{F: []any{func() {}}}, "f[0]: unsupported type func()"},
		{"deep", deep, "nesting deeper than"},
		{"cyclic map", cyclic, "nesting deeper than"},
		{"cyclic pointers", loop, "nesting deeper than"},
		{"bad json number", json.Number("1x"), "number 1x"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Normalize(tc.in)
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.msg)
		})
	}
}

// assignCase assigns in to a new value of type T and checks the result or
// the error text.
type assignCase struct {
	name    string
	run     func(t *testing.T) (got any, err error)
	want    any
	wantErr string
}

func ac[T any](name string, in any, want T) assignCase {
	return assignCase{name: name, want: want, run: func(*testing.T) (any, error) {
		var dst T
		err := Assign(&dst, in)
		return dst, err
	}}
}

func acErr[T any](name string, in any, wantErr string) assignCase {
	return assignCase{name: name, wantErr: wantErr, run: func(*testing.T) (any, error) {
		var dst T
		err := Assign(&dst, in)
		return dst, err
	}}
}

func TestAssign(t *testing.T) {
	when := time.Date(2024, 1, 2, 3, 4, 5, 600, time.UTC)
	cases := []assignCase{
		ac("int", int64(5), 5),
		ac("int from whole float", 2.0, 2),
		ac("int8", int64(-128), int8(-128)),
		ac("uint16", int64(65535), uint16(65535)),
		ac("uint64 max", uint64(math.MaxUint64), uint64(math.MaxUint64)),
		ac("uint64 from int64", int64(math.MaxInt64), uint64(math.MaxInt64)),
		ac("int64 min", int64(math.MinInt64), int64(math.MinInt64)),
		ac("int from go int", 7, 7),
		ac("float from int", int64(3), 3.0),
		ac("float32", 1.5, float32(1.5)),
		ac("float from uint64", uint64(math.MaxUint64), float64(math.MaxUint64)),
		ac("nan", math.NaN(), math.NaN()),
		ac("string", "s", "s"),
		ac("bool", true, true),
		ac("named string", "NO_ROUTE", schema.CodeNoRoute),
		ac("any", []any{int64(1)}, any([]any{int64(1)})),
		ac("any nil", nil, any(nil)),
		ac("nil pointer", nil, (*int)(nil)),
		ac("pointer", int64(5), intPtr(5)),
		ac("bytes", []byte{1, 2}, []byte{1, 2}),
		ac("bytes from base64", "AQI=", []byte{1, 2}),
		ac("bytes from list", []any{int64(1), int64(2)}, []byte{1, 2}),
		ac("nil bytes", nil, []byte(nil)),
		ac("byte array", []byte{1, 2, 3}, [3]byte{1, 2, 3}),
		ac("named byte array", "AQI=", [2]myByte{1, 2}),
		ac("named byte slice", []byte{3}, []myByte{3}),
		ac("int slice", []any{int64(1), 2.0}, []int{1, 2}),
		ac("string slice", []any{"a", "b"}, []string{"a", "b"}),
		ac("typed slice as is", []string{"x"}, []string{"x"}),
		ac("nil slice", nil, []string(nil)),
		ac("empty slice", []any{}, []string{}),
		ac("nested slices", []any{[]any{int64(1)}, []any{}}, [][]int{{1}, {}}),
		ac("array", []any{int64(1), int64(2)}, [2]int{1, 2}),
		ac("any slice shares", []any{"a", int64(1)}, []any{"a", int64(1)}),
		ac("string map", map[string]any{"a": int64(1)}, map[string]int{"a": 1}),
		ac("named key map", map[string]any{"a": "b"}, map[schema.Code]string{"a": "b"}),
		ac("int key map", map[string]any{"-1": "a", "2": "b"}, map[int]string{-1: "a", 2: "b"}),
		ac("uint key map", map[string]any{"300": true}, map[uint16]bool{300: true}),
		ac("text key map", map[string]any{"#010203": int64(1)}, map[color]int{{1, 2, 3}: 1}),
		ac("map of pointers", map[string]any{"a": int64(1), "b": int64(2)}, map[string]*int{"a": intPtr(1), "b": intPtr(2)}),
		ac("nil map", nil, map[string]int(nil)),
		ac("any map", map[string]any{"a": nil}, map[string]any{"a": nil}),
		ac("struct", map[string]any{"x": int64(1), "y": int64(2), "z": "unknown"}, point{X: 1, Y: 2}),
		ac("struct case-insensitive", map[string]any{"X": int64(1)}, point{X: 1}),
		ac("struct exact wins", map[string]any{"X": int64(2), "x": int64(1)}, point{X: 1}),
		ac("struct pointer", map[string]any{"x": int64(4)}, &point{X: 4}),
		ac("embedded", map[string]any{"id": "i", "extra": int64(3), "name": "n", "ptr": int64(5), "quoted": "12", "NoTag": 1.5, "secret": "s", "Hidden": int64(1)},
			outer{base: base{ID: "i"}, Extra: &Extra{Extra: 3}, Name: "n", Ptr: intPtr(5), Quoted: 12, NoTag: 1.5}),
		ac("nil pointer field", map[string]any{"ptr": nil}, outer{}),
		ac("nested", map[string]any{"id": "o", "items": []any{map[string]any{"name": "a", "qty": int64(2)}}},
			order{ID: "o", Items: []item{{"a", 2}}}),
		ac("time", "2024-01-02T03:04:05.0000006Z", when),
		ac("json unmarshaler", map[string]any{"celsius": 21.5}, celsius(21.5)),
		ac("json unmarshaler pointer", map[string]any{"celsius": int64(3)}, func() *celsius { c := celsius(3); return &c }()),
		ac("text unmarshaler", "#0a0b0c", color{10, 11, 12}),
		ac("non-model value", []int{1, 2}, []int64{1, 2}),
		ac("non-model struct", point{X: 9}, map[string]int{"x": 9}),
		ac("wire request", map[string]any{"cmds": []any{map[string]any{"name": "a", "fun": "f", "args": []any{int64(1)}}}},
			schema.Request{Cmds: []schema.Command{{Name: "a", Fun: "f", Args: []any{int64(1)}}}}),

		acErr[int]("int from string", "x", "want int, got string"),
		acErr[int]("int from null", nil, "want int, got null"),
		acErr[int]("fraction", 1.5, "want int, got 1.5 (not an integer)"),
		acErr[int]("infinite", math.Inf(1), "want int, got +Inf (not an integer)"),
		acErr[int]("nan into int", math.NaN(), "want int, got NaN (not an integer)"),
		acErr[int8]("int8 overflow", int64(300), "want int8, got 300 (out of range)"),
		acErr[int8]("int8 underflow", int64(-129), "want int8, got -129 (out of range)"),
		acErr[int64]("int64 from uint64 max", uint64(math.MaxUint64), "want int64, got 18446744073709551615 (out of range)"),
		acErr[int64]("int64 from huge float", 1e19, "want int64, got 1e+19 (out of range)"),
		acErr[uint8]("negative uint", int64(-1), "want uint8, got -1 (out of range)"),
		acErr[uint]("negative float uint", -2.0, "want uint, got -2 (out of range)"),
		acErr[float32]("float32 overflow", 1e300, "want float32, got 1e+300 (out of range)"),
		acErr[float64]("float from string", "1", "want float64, got string"),
		acErr[string]("string from binary", []byte("x"), "want string, got binary"),
		acErr[string]("string from null", nil, "want string, got null"),
		acErr[bool]("bool from number", int64(1), "want bool, got number"),
		acErr[[]byte]("bad base64", "!!!", "want []byte, got string (not base64)"),
		acErr[[3]byte]("short byte array", []byte{1}, "want [3]byte, got 1 bytes"),
		acErr[[]int]("slice from string", "x", "want []int, got string"),
		acErr[[]int]("slice element", []any{int64(1), "x"}, "[1]: want int, got string"),
		acErr[[2]int]("array length", []any{int64(1)}, "want [2]int, got list of 1"),
		acErr[map[string]int]("map from list", []any{}, "want map, got list"),
		acErr[map[string]int]("map value", map[string]any{"a": "b"}, "a: want int, got string"),
		acErr[map[int]string]("map int key", map[string]any{"x": "a"}, `x: want map key of type int, got key "x"`),
		acErr[map[int8]string]("map key overflow", map[string]any{"300": "a"}, `300: want map key of type int8, got key "300"`),
		acErr[map[float64]int]("map float key", map[string]any{"1": int64(1)}, "unsupported map key type float64"),
		acErr[point]("struct from list", []any{}, "want struct point, got list"),
		acErr[point]("struct from null", nil, "want struct point, got null"),
		acErr[point]("struct field", map[string]any{"x": "a"}, "x: want int, got string"),
		acErr[order]("nested path", map[string]any{"items": []any{map[string]any{"name": "a"}, map[string]any{"name": int64(1)}}},
			"items[1].name: want string, got number"),
		acErr[[]item]("top-level list path", []any{map[string]any{"name": "a"}, map[string]any{"qty": 1.5}},
			"[1].qty: want int, got 1.5 (not an integer)"),
		acErr[map[string][]point]("map list struct path", map[string]any{"k": []any{map[string]any{"y": true}}},
			"k[0].y: want int, got bool"),
		acErr[*int]("pointer mismatch", "x", "want int, got string"),
		acErr[time.Time]("bad time", "yesterday", `want time.Time, got "yesterday" (not an RFC 3339 time)`),
		acErr[time.Time]("time from number", int64(1), "want time.Time, got number"),
		acErr[celsius]("json unmarshaler error", map[string]any{}, "want codec.celsius, got map: no celsius"),
		acErr[color]("text unmarshaler error", "red", `want struct color, got "red" (input does not match format)`),
		acErr[withHidden]("unexported embedded pointer", map[string]any{"extra": int64(1)},
			"extra: cannot set a field of a nil embedded pointer to unexported codec.hiddenExtra"),
		acErr[error]("interface", "x", "want error, got string"),
		acErr[chan int]("chan", nil, "unsupported destination type chan int"),
		acErr[int]("unsupported value", make(chan int), "want int, got chan int"),
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.run(t)
			if tc.wantErr != "" {
				require.Error(t, err)
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

func TestAssignErrorFields(t *testing.T) {
	var o order
	err := Assign(&o, map[string]any{"items": []any{map[string]any{}, map[string]any{}, map[string]any{"qty": "3"}}})
	var ae *AssignError
	require.ErrorAs(t, err, &ae)
	require.Equal(t, ".items[2].qty", ae.Path)
	require.Equal(t, "int", ae.Want)
	require.Equal(t, "string", ae.Got)
	require.Equal(t, "items[2].qty: want int, got string", ae.Error())
	require.Equal(t, "b: "+ae.Error(), fmt.Sprintf("b: %v", err), "reads well after a parameter name")

	var n int
	err = Assign(&n, "x")
	require.ErrorAs(t, err, &ae)
	require.Empty(t, ae.Path)
	require.Equal(t, "want int, got string", err.Error())

	var c celsius
	err = Assign(&c, map[string]any{})
	require.ErrorAs(t, err, &ae)
	require.EqualError(t, errors.Unwrap(err), "no celsius")
}

func TestAssignDestinations(t *testing.T) {
	var n int
	require.Error(t, Assign(n, int64(1)), "not a pointer")
	require.Error(t, Assign((*int)(nil), int64(1)), "nil pointer")
	require.Error(t, Assign(nil, int64(1)), "nil")
	require.Error(t, AssignValue(reflect.ValueOf(n), int64(1)), "not settable")

	// Existing pointers are reused, like encoding/json.
	p := intPtr(1)
	keep := p
	require.NoError(t, Assign(&p, int64(2)))
	require.Same(t, keep, p)
	require.Equal(t, 2, *p)

	// Binary values are copied.
	src := []byte{1, 2}
	var b []byte
	require.NoError(t, Assign(&b, src))
	b[0] = 9
	require.Equal(t, byte(1), src[0])

	// AssignValue on a struct field.
	var pt point
	require.NoError(t, AssignValue(reflect.ValueOf(&pt).Elem().Field(0), int64(7)))
	require.Equal(t, 7, pt.X)
}

func TestAssignDepth(t *testing.T) {
	deep := any(int64(1))
	for range MaxDepth + 2 {
		deep = []any{deep}
	}
	var dst any
	require.NoError(t, Assign(&dst, deep), "any takes the tree as is")

	type rec struct {
		Next *rec `json:"next"`
	}
	cyclic := map[string]any{}
	cyclic["next"] = cyclic
	var r rec
	err := Assign(&r, cyclic)
	require.ErrorContains(t, err, "nesting deeper than")
}

func TestAssignNoAllocs(t *testing.T) {
	vInt, vStr, vFloat := any(int64(1234567)), any("hello"), any(2.5)
	var (
		i   int
		i32 int32
		u   uint16
		s   string
		f   float64
		pt  point
	)
	checks := map[string]func(){
		"int":          func() { _ = Assign(&i, vInt) },
		"string":       func() { _ = Assign(&s, vStr) },
		"float":        func() { _ = Assign(&f, vFloat) },
		"int32":        func() { _ = Assign(&i32, vInt) },
		"reflect int":  func() { _ = AssignValue(reflect.ValueOf(&i).Elem(), vInt) },
		"reflect str":  func() { _ = AssignValue(reflect.ValueOf(&s).Elem(), vStr) },
		"reflect uint": func() { _ = AssignValue(reflect.ValueOf(&u).Elem(), any(int64(7))) },
		"struct field": func() { _ = AssignValue(reflect.ValueOf(&pt).Elem().Field(0), vInt) },
	}
	for name, fn := range checks {
		require.Zero(t, testing.AllocsPerRun(100, fn), name)
	}
	require.Equal(t, 1234567, i)
	require.Equal(t, int32(1234567), i32)
	require.Equal(t, "hello", s)
}

func BenchmarkAssignInt(b *testing.B) {
	v := any(int64(42))
	var n int
	b.ReportAllocs()
	for b.Loop() {
		_ = Assign(&n, v)
	}
}

func BenchmarkAssignStruct(b *testing.B) {
	v := map[string]any{"id": "o", "items": []any{map[string]any{"name": "a", "qty": int64(2)}, map[string]any{"name": "b", "qty": int64(3)}}}
	b.ReportAllocs()
	for b.Loop() {
		var o order
		if err := Assign(&o, v); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkNormalizeModel(b *testing.B) {
	v := map[string]any{"a": []any{int64(1), "x", map[string]any{"b": 1.5}}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Normalize(v); err != nil {
			b.Fatal(err)
		}
	}
}
