package node

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/require"

	"github.com/mpreg/mpreg/codec"
	"github.com/mpreg/mpreg/schema"
)

// Inputs of Func that the differential tests bind, each with the shapes a
// plan fills and the ones it leaves to JSON.
type (
	fbInner struct {
		N    int64    `json:"n"`
		S    *string  `json:"s,omitempty"`
		Next *fbInner `json:"next"`
	}
	fbStruct struct {
		I      int            `json:"i"`
		I8     int8           `json:"i8"`
		U16    uint16         `json:"u16"`
		U      uint           `json:"u"`
		F      float64        `json:"f"`
		F32    float32        `json:"f32"`
		S      string         `json:"s"`
		B      bool           `json:"b"`
		Name   string         // no tag
		P      *int           `json:"p"`
		PP     **string       `json:"pp"`
		L      []int          `json:"l"`
		LS     []*string      `json:"ls,omitzero"`
		A      any            `json:"a"`
		LA     []any          `json:"la"`
		M      map[string]any `json:"m"`
		In     fbInner        `json:"in"`
		Ins    []fbInner      `json:"ins"`
		Q      int            `json:"q,string"`
		Bs     []byte         `json:"bs"`
		MI     map[string]int `json:"mi"`
		T      time.Time      `json:"t"`
		Arr    [2]int         `json:"arr"`
		Skip   int            `json:"-"`
		hidden int
	}
	fbEmbedded struct {
		fbInner
		X int `json:"x"`
	}
	fbFolded struct {
		A int `json:"a"`
		B int `json:"A"`
	}
)

// fbKeys are the keys random objects take: the fields' names, in other
// cases, names of nothing, and non-ASCII keys that fold to ASCII ones.
var fbKeys = []string{"i", "I", "i8", "u16", "U16", "u", "f", "f32", "s", "S", "b", "Name", "name", "NAME",
	"p", "pp", "l", "ls", "a", "la", "m", "in", "ins", "q", "bs", "mi", "t", "arr", "-", "Skip", "hidden",
	"n", "next", "Next", "x", "A", "é", "\u212a", "\u017f", "\xff"}

// fbScalars are leaves around every edge the plan checks.
var fbScalars = []any{
	nil, true, false,
	int64(0), int64(1), int64(-1), int64(127), int64(128), int64(-129), int64(255), int64(256), int64(65535),
	int64(65536), int64(1 << 24), int64(1<<24 + 1), int64(1 << 53), int64(1<<53 + 1), int64(-1 << 53),
	int64(math.MaxInt32 + 1), int64(math.MaxInt64), int64(math.MinInt64), uint64(math.MaxUint64), uint64(1 << 63),
	0.0, math.Copysign(0, -1), 1.5, 2.0, 0.1, 1e300, 3.4028234663852886e38, 1e-45, math.NaN(), math.Inf(1), math.Inf(-1),
	"", "x", "7", "é", "\xff", "2024-01-02T03:04:05Z", "AQI=", []byte{1, 2},
}

// fbTree returns a random value tree of the codec's value model.
func fbTree(r *rand.Rand, depth int) any {
	switch n := r.IntN(10); {
	case depth > 3 || n < 6:
		return fbScalars[r.IntN(len(fbScalars))]
	case n < 8:
		l := make([]any, r.IntN(4))
		for i := range l {
			l[i] = fbTree(r, depth+1)
		}
		return l
	default:
		return fbObject(r, depth+1)
	}
}

func fbObject(r *rand.Rand, depth int) map[string]any {
	m := map[string]any{}
	for range r.IntN(4) {
		m[fbKeys[r.IntN(len(fbKeys))]] = fbTree(r, depth)
	}
	return m
}

// fbCall is the arguments of one call.
type fbCall struct {
	args   []any
	kwargs map[string]any
}

func fbCalls(r *rand.Rand) []fbCall {
	obj := fbObject(r, 0)
	calls := []fbCall{{nil, obj}, {[]any{obj}, nil}, {[]any{fbTree(r, 0)}, nil}, {nil, nil}}
	if r.IntN(8) == 0 {
		calls = append(calls, fbCall{[]any{fbTree(r, 0), fbTree(r, 0)}, nil}, fbCall{[]any{nil}, obj})
	}
	return calls
}

// fbChecker binds calls into In with the plan and with JSON alone.
type fbChecker interface {
	check(t testing.TB, c fbCall) (planned bool)
	name() string
}

type fbBinder[In any] struct {
	in   param
	plan *inPlan
}

func newFBBinder[In any](t testing.TB, wantPlan bool) fbBinder[In] {
	in := newParam(reflect.TypeFor[In]())
	plan := newInPlan(reflect.TypeFor[In](), in.fields != nil)
	require.Equal(t, wantPlan, plan != nil, "plan of %s", reflect.TypeFor[In]())
	return fbBinder[In]{in: in, plan: plan}
}

func (b fbBinder[In]) name() string { return reflect.TypeFor[In]().String() }

// check requires the same value and error from bindIn with the plan and
// without, and says whether the plan took the call.
func (b fbBinder[In]) check(t testing.TB, c fbCall) bool {
	t.Helper()
	got, gotErr := bindIn[In](b.plan, b.in, c.args, c.kwargs)
	want, wantErr := bindIn[In](nil, b.in, c.args, c.kwargs)
	what := fmt.Sprintf("%s from %#v, %#v", b.name(), c.args, c.kwargs)
	requireSameError(t, wantErr, gotErr, what)
	if !reflect.DeepEqual(want, got) && fmt.Sprintf("%#v", want) != fmt.Sprintf("%#v", got) { // NaN
		t.Fatalf("%s: got %#v with the plan, %#v by JSON", what, got, want)
	}
	var v In
	return b.plan != nil && b.plan.bind(unsafe.Pointer(&v), c.args, c.kwargs)
}

func requireSameError(t testing.TB, want, got error, what string) {
	t.Helper()
	if want == nil || got == nil {
		require.Equal(t, want == nil, got == nil, "%s: error %v with the plan, %v by JSON", what, got, want)
		return
	}
	require.Equal(t, want.Error(), got.Error(), what)
	var we, ge *schema.Error
	require.True(t, errors.As(want, &we) && errors.As(got, &ge), what)
	require.Equal(t, we.Code, ge.Code, what)
	require.Equal(t, we.Details, ge.Details, what)
}

func fbCheckers(t testing.TB) []fbChecker {
	return []fbChecker{
		newFBBinder[fbStruct](t, true),
		newFBBinder[*fbStruct](t, true),
		newFBBinder[fbInner](t, true),
		newFBBinder[[]fbInner](t, true),
		newFBBinder[[]int](t, true),
		newFBBinder[[]*uint8](t, true),
		newFBBinder[any](t, true),
		newFBBinder[[]any](t, true),
		newFBBinder[map[string]any](t, true),
		newFBBinder[int](t, true),
		newFBBinder[int8](t, true),
		newFBBinder[uint32](t, true),
		newFBBinder[float32](t, true),
		newFBBinder[string](t, true),
		newFBBinder[bool](t, true),
		newFBBinder[fbEmbedded](t, false),
		newFBBinder[fbFolded](t, false),
		newFBBinder[time.Time](t, false),
		newFBBinder[map[string]int](t, false),
		newFBBinder[[]byte](t, false),
		newFBBinder[error](t, false),
	}
}

// TestFuncPlanMatchesJSON binds random trees into each input type with the
// plan and with JSON alone, and requires the same values and errors; the
// plan must take a good share of the calls (else it proves nothing).
func TestFuncPlanMatchesJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	checkers := fbCheckers(t)
	planned := map[string]int{}
	const rounds = 2000
	for range rounds {
		for _, c := range fbCalls(r) {
			for _, ch := range checkers {
				if ch.check(t, c) {
					planned[ch.name()]++
				}
			}
		}
	}
	for _, name := range []string{"node.fbStruct", "*node.fbStruct", "node.fbInner", "[]int", "interface {}", "int"} {
		require.Greater(t, planned[name], rounds/20, "calls of %s the plan took", name)
	}
	t.Logf("calls the plan took, of %d rounds: %v", rounds, planned)
}

// TestFuncPlanValues pins what the plan fills, with a call each shape.
func TestFuncPlanValues(t *testing.T) {
	s, one := "s", 1
	ps := &s
	in := map[string]any{
		"I": int64(-3), "i8": int64(-128), "U16": int64(65535), "u": uint64(math.MaxUint64), "f": int64(7),
		"f32": 0.5, "s": "é", "b": true, "NAME": "n", "p": int64(1), "pp": "s", "l": []any{int64(1), nil},
		"ls": []any{nil, "s"}, "a": []any{int64(2), map[string]any{"k": nil}}, "la": []any{int64(3)},
		"m": map[string]any{"x": int64(4)}, "in": map[string]any{"n": int64(5), "next": map[string]any{"s": "s"}},
		"ins": []any{map[string]any{}},
	}
	want := fbStruct{I: -3, I8: -128, U16: 65535, U: math.MaxUint64, F: 7, F32: 0.5, S: "é", B: true, Name: "n",
		P: &one, PP: &ps, L: []int{1, 0}, LS: []*string{nil, &s}, A: []any{2.0, map[string]any{"k": nil}},
		LA: []any{3.0}, M: map[string]any{"x": 4.0}, In: fbInner{N: 5, Next: &fbInner{S: &s}}, Ins: []fbInner{{}}}
	b := newFBBinder[fbStruct](t, true)
	var got fbStruct
	require.True(t, b.plan.bind(unsafe.Pointer(&got), nil, in))
	require.Equal(t, want, got)
	require.True(t, b.check(t, fbCall{nil, in}))

	for _, refused := range []map[string]any{
		{"q": "1"}, {"bs": "AQI="}, {"mi": map[string]any{}}, {"t": "2024-01-02T03:04:05Z"}, {"arr": []any{}},
		{"i": 1.0}, {"i8": int64(128)}, {"u": int64(-1)}, {"f": math.NaN()}, {"f32": 0.1}, {"s": "\xff"},
		{"a": []byte{1}}, {"x": int64(1)}, {"i": int64(1), "I": int64(2)}, {"\u212a": int64(1)},
	} {
		require.False(t, b.plan.bind(unsafe.Pointer(&got), nil, refused), "%v", refused)
		b.check(t, fbCall{nil, refused})
	}
}

// TestFuncNullAny: a Func of any takes null as nil (the JSON path's value,
// once a panic on the nil interface).
func TestFuncNullAny(t *testing.T) {
	f := Func(func(_ context.Context, v any) (any, error) { return []any{v}, nil })
	got, err := f(context.Background(), []any{nil}, nil)
	require.NoError(t, err)
	require.Equal(t, []any{nil}, got)
	_, err = bindIn[any](nil, newParam(reflect.TypeFor[any]()), []any{nil}, nil)
	require.NoError(t, err)
}

// FuzzFuncBindMatchesJSON decodes the input with each codec and binds the
// tree into each input type with the plan and with JSON alone: the values
// and errors must be the same.
func FuzzFuncBindMatchesJSON(f *testing.F) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 20 {
		tree := fbObject(r, 0)
		for _, c := range []codec.Codec{codec.JSON, codec.MsgPack} {
			if b, err := c.Encode(tree); err == nil {
				f.Add(b)
			}
		}
	}
	f.Add([]byte(`{"i":1,"I":2,"f32":0.1,"in":{"next":{"next":{"n":-0}}},"a":[1,"x",null,{"k":1e300}]}`))
	f.Add([]byte(`[{"n":1},{"N":9007199254740993}]`))
	checkers := fbCheckers(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, c := range []codec.Codec{codec.JSON, codec.MsgPack} {
			tree, err := c.Decode(data)
			if err != nil {
				continue
			}
			calls := []fbCall{{[]any{tree}, nil}}
			switch x := tree.(type) {
			case map[string]any:
				calls = append(calls, fbCall{nil, x})
			case []any:
				calls = append(calls, fbCall{x, nil})
			}
			for _, call := range calls {
				for _, ch := range checkers {
					ch.check(t, call)
				}
			}
		}
	})
}

// BenchmarkFuncBind calls a Func of a struct input, with the plan and with
// JSON alone (as Func bound before the plan).
func BenchmarkFuncBind(b *testing.B) {
	type rect struct {
		W    float64  `json:"w"`
		H    float64  `json:"h"`
		Name string   `json:"name"`
		Tags []string `json:"tags"`
	}
	f := func(_ context.Context, r rect) (float64, error) { return r.W * r.H, nil }
	kwargs := map[string]any{"w": 2.5, "h": int64(4), "name": "a", "tags": []any{"x", "y"}}
	in := newParam(reflect.TypeFor[rect]())
	for _, bc := range []struct {
		name string
		plan *inPlan
	}{{"plan", newInPlan(reflect.TypeFor[rect](), true)}, {"json", nil}} {
		b.Run(bc.name, func(b *testing.B) {
			raw := RawFunc(func(ctx context.Context, args []any, kwargs map[string]any) (any, error) {
				v, err := bindIn[rect](bc.plan, in, args, kwargs)
				if err != nil {
					return nil, err
				}
				return f(ctx, v)
			})
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := raw(ctx, nil, kwargs); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("Func", func(b *testing.B) {
		raw := Func(f)
		ctx := context.Background()
		b.ReportAllocs()
		for b.Loop() {
			if _, err := raw(ctx, nil, kwargs); err != nil {
				b.Fatal(err)
			}
		}
	})
}
