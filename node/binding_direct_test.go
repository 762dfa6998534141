package node

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
)

// TestDirectCallMatchesReflection calls functions of every shape that
// callDirect handles both directly and through reflect.Value.Call, with
// arguments that fit and arguments that do not, and requires the same
// results and errors from both.
func TestDirectCallMatchesReflection(t *testing.T) {
	boom := errors.New("boom")
	funcs := []struct {
		name   string
		f      any
		params []string
	}{
		{"echo", func(x any) any { return x }, []string{"x"}},
		{"echo_pos", func(x any) any { return x }, nil},
		{"maybe", func(x any) (any, error) {
			if x == "fail" {
				return "ignored", boom
			}
			return x, nil
		}, []string{"x"}},
		{"ctx", func(ctx context.Context, x any) (any, error) {
			if ctx == nil {
				return nil, boom
			}
			return []any{x, ctx.Value(ctxKey{})}, nil
		}, []string{"x"}},
		{"echos", func(args ...any) []any { return args }, nil},
		{"nilslice", func(...any) []any { return nil }, nil},
	}
	calls := []struct {
		args   []any
		kwargs map[string]any
	}{
		{nil, nil},
		{[]any{}, map[string]any{}},
		{[]any{"a"}, nil},
		{[]any{nil}, nil},
		{[]any{"fail"}, nil},
		{[]any{int64(1), "b"}, nil},
		{[]any{"a", "b", "c", "d", "e"}, nil},
		{nil, map[string]any{"x": 1.5}},
		{nil, map[string]any{"x": nil}},
		{nil, map[string]any{"y": 1}},
		{[]any{"a"}, map[string]any{"x": "b"}},
		{[]any{map[string]any{"k": []any{"v"}}}, nil},
	}
	ctx := context.WithValue(context.Background(), ctxKey{}, "v")
	for _, fc := range funcs {
		direct, err := newBinding(fc.name, fc.f, fc.params)
		if err != nil {
			t.Fatal(err)
		}
		if direct.direct == nil {
			t.Fatalf("%s: not called directly", fc.name)
		}
		reflective := *direct
		reflective.direct = nil
		for _, c := range calls {
			got, gotErr := direct.call(ctx, c.args, c.kwargs)
			want, wantErr := reflective.call(ctx, c.args, c.kwargs)
			what := fmt.Sprintf("%s(%v, %v)", fc.name, c.args, c.kwargs)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("%s = %#v directly, %#v by reflection", what, got, want)
			}
			if !reflect.DeepEqual(gotErr, wantErr) {
				t.Errorf("%s: error %#v directly, %#v by reflection", what, gotErr, wantErr)
			}
		}
	}
}

type ctxKey struct{}

// BenchmarkEchoCall is the registered echo called directly and by
// reflection, as a node's exec path calls it.
func BenchmarkEchoCall(b *testing.B) {
	direct, err := newBinding("echo", func(x any) any { return x }, []string{"x"})
	if err != nil {
		b.Fatal(err)
	}
	reflective := *direct
	reflective.direct = nil
	args := []any{"0123456789abcdef"}
	for _, bc := range []struct {
		name string
		b    *binding
	}{{"direct", direct}, {"reflect", &reflective}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := bc.b.call(context.Background(), args, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
