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

// Extra is exported so that encoding/json can allocate it when embedded
// by pointer.
type Extra struct {
	Extra int `json:"extra"`
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
		{"float64 keeps being a float", 2.0, 2.0},
		{"inf", math.Inf(1), math.Inf(1)},
		{"bytes", []byte{1, 2}, []byte{1, 2}},
		{"named string", code("x"), "x"},
		{"int slice", []int{1, 2}, []any{int64(1), int64(2)}},
		{"float slice keeps floats", []float64{1, 2.5}, []any{1.0, 2.5}},
		{"string slice", []string{"a", "b"}, []any{"a", "b"}},
		{"nil slice", []int(nil), nil},
		{"named byte slice", []myByte{8}, []byte{8}},
		{"byte array, as encoding/json", [3]byte{1, 2, 3}, []any{int64(1), int64(2), int64(3)}},
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
		{"time pointer", &when, "2024-01-02T03:04:05.0000006Z"},
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
		{"embedded pointer, integral float as in its JSON", outer{Extra: &Extra{Extra: 2}, Ptr: intPtr(8), NoTag: 3},
			map[string]any{"id": "", "extra": int64(2), "name": "", "ptr": int64(8), "quoted": "0", "NoTag": int64(3)}},
		{"nested structs", order{ID: "o", Items: []item{{"a", 1}}},
			map[string]any{"id": "o", "items": []any{map[string]any{"name": "a", "qty": int64(1)}}}},
		{"wire struct", &schema.Error{Code: schema.CodeNoRoute, Message: "m", Details: map[string]any{"n": 1}},
			map[string]any{"code": "NO_ROUTE", "message": "m", "details": map[string]any{"n": int64(1)}}},
		{"nil wire struct", (*schema.Response)(nil), nil},
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
	got, err := Normalize([]any{math.NaN(), float32(math.NaN()), []float32{float32(math.Inf(-1))}})
	require.NoError(t, err)
	l := got.([]any)
	require.True(t, math.IsNaN(l[0].(float64)))
	require.True(t, math.IsNaN(l[1].(float64)))
	require.True(t, math.IsInf(l[2].([]any)[0].(float64), -1))
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
		{"chan", make(chan int), "unsupported type: chan int"},
		{"func", func() {}, "unsupported type: func()"},
		{"complex", complex(1, 2), "unsupported type: complex128"},
		{"float keys", map[float64]int{1: 1}, "unsupported type: map[float64]int"},
		{"path", map[string]any{"a": []any{1, make(chan int)}}, `"a": [1]: json: unsupported type: chan int`},
		{"struct", struct {
			F []any `json:"f"`
		}{F: []any{func() {}}}, "unsupported type: func()"},
		{"deep", deep, "nesting deeper than"},
		{"cyclic map", cyclic, "nesting deeper than"},
		{"cyclic pointers", loop, "cycle"},
		{"bad json number", json.Number("1x"), `invalid number literal "1x"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Normalize(tc.in)
			require.ErrorContains(t, err, tc.msg)
			require.ErrorContains(t, err, "codec: normalize: ")
		})
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
