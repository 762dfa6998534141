package objref_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/mpreg/mpreg/codec"
	"github.com/mpreg/mpreg/objref"
)

var digest = strings.Repeat("ab", 32)

func ref(name string) map[string]any {
	return objref.Ref{Bucket: "b", Name: name, Size: 3, SHA256: digest, Encoding: objref.Bytes}.Tree()
}

// escapeCases are values whose maps look like references or escapes, and
// what Escape makes of them.
var escapeCases = []struct {
	name     string
	in, want any
}{
	{"scalar", "x", "x"},
	{"plain map", map[string]any{"a": int64(1)}, map[string]any{"a": int64(1)}},
	{"obj literal", map[string]any{"$obj": int64(1)}, map[string]any{"$lit": map[string]any{"$obj": int64(1)}}},
	{"lit literal", map[string]any{"$lit": "x"}, map[string]any{"$lit": map[string]any{"$lit": "x"}}},
	{"obj with another key", map[string]any{"$obj": int64(1), "b": true}, map[string]any{"$obj": int64(1), "b": true}},
	{"nested", []any{map[string]any{"k": map[string]any{"$lit": map[string]any{"$obj": nil}}}},
		[]any{map[string]any{"k": map[string]any{"$lit": map[string]any{"$lit": map[string]any{"$lit": map[string]any{"$obj": nil}}}}}}},
	{"a reference's shape", ref("n"), map[string]any{"$lit": ref("n")}},
}

func TestEscape(t *testing.T) {
	for _, c := range escapeCases {
		t.Run(c.name, func(t *testing.T) {
			got := objref.Escape(c.in)
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("Escape(%v) = %v, want %v", c.in, got, c.want)
			}
			back, err := objref.Unescape(got, failing)
			if err != nil {
				t.Fatalf("Unescape: %v", err)
			}
			if !reflect.DeepEqual(back, c.in) {
				t.Fatalf("Unescape(Escape(%v)) = %v", c.in, back)
			}
		})
	}
}

var errResolved = errors.New("a reference was resolved")

func failing(objref.Ref) (any, error) { return nil, errResolved }

func TestUnescapeResolves(t *testing.T) {
	in := []any{"a", ref("one"), map[string]any{"x": []any{ref("two")}}, map[string]any{"$lit": ref("three")}}
	var seen []string
	out, err := objref.UnescapeList(in, func(r objref.Ref) (any, error) {
		seen = append(seen, r.Name)
		return "<" + r.Name + ">", nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []any{"a", "<one>", map[string]any{"x": []any{"<two>"}}, ref("three")}
	if !reflect.DeepEqual(out, want) {
		t.Fatalf("got %v, want %v", out, want)
	}
	if !reflect.DeepEqual(seen, []string{"one", "two"}) {
		t.Fatalf("resolved %v", seen)
	}
	if !reflect.DeepEqual(in[1], ref("one")) {
		t.Fatal("the input changed")
	}
}

func TestUnescapeValuesLeavesTheMapItself(t *testing.T) {
	kw := map[string]any{"$obj": "not a reference: a keyword argument named $obj"}
	out, err := objref.UnescapeValues(kw, failing)
	if err != nil || !reflect.DeepEqual(out, kw) {
		t.Fatalf("got %v, %v", out, err)
	}
}

func TestUnescapeKeepsUnchangedValues(t *testing.T) {
	l := []any{"a", int64(1), map[string]any{"b": []any{true}}}
	out, err := objref.UnescapeList(l, failing)
	if err != nil || &out[0] != &l[0] {
		t.Fatalf("a list without references was copied (%v)", err)
	}
}

func TestParse(t *testing.T) {
	good := map[string]any{"bucket": "b", "name": "n", "size": uint64(7), "sha256": digest, "encoding": "json", "extra": 1}
	r, err := objref.Parse(good)
	if err != nil || r != (objref.Ref{Bucket: "b", Name: "n", Size: 7, SHA256: digest, Encoding: objref.JSON}) {
		t.Fatalf("Parse = %+v, %v", r, err)
	}
	for name, mutate := range map[string]func(m map[string]any){
		"not a map":        nil,
		"no bucket":        func(m map[string]any) { delete(m, "bucket") },
		"empty name":       func(m map[string]any) { m["name"] = "" },
		"negative size":    func(m map[string]any) { m["size"] = int64(-1) },
		"fractional size":  func(m map[string]any) { m["size"] = 1.5 },
		"huge size":        func(m map[string]any) { m["size"] = uint64(1) << 60 },
		"upper-case hex":   func(m map[string]any) { m["sha256"] = strings.ToUpper(digest) },
		"short digest":     func(m map[string]any) { m["sha256"] = "abc" },
		"unknown encoding": func(m map[string]any) { m["encoding"] = "gzip" },
	} {
		var v any = "x"
		if mutate != nil {
			m := map[string]any{}
			for k, x := range good {
				m[k] = x
			}
			mutate(m)
			v = m
		}
		var pe *objref.Error
		if _, err := objref.Parse(v); !errors.As(err, &pe) {
			t.Errorf("%s: Parse error %v, want an *objref.Error", name, err)
		}
	}
	if _, err := objref.Unescape(map[string]any{"$obj": "x"}, failing); err == nil || errors.Is(err, errResolved) {
		t.Fatalf("a malformed reference: %v", err)
	}
}

// FuzzEscapeRoundTrip checks, for any value a codec decodes, that
// Unescape(Escape(v)) is v, that no reference is read in an escaped
// value, and that both survive the wire.
func FuzzEscapeRoundTrip(f *testing.F) {
	for _, c := range escapeCases {
		data, err := codec.JSON.Encode(c.in)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(`{"$lit":{"$lit":{"$obj":{"bucket":"b"}}}}`))
	f.Add([]byte(`[{"$obj":{}},{"$lit":5},{"a":{"$lit":[{"$obj":1}]}}]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := codec.JSON.Decode(data)
		if err != nil {
			return
		}
		esc := objref.Escape(v)
		back, err := objref.Unescape(esc, failing)
		if err != nil {
			t.Fatalf("Unescape(Escape(%s)): %v", data, err)
		}
		if !reflect.DeepEqual(back, v) {
			t.Fatalf("Unescape(Escape(%s)) = %v", data, back)
		}
		wire, err := codec.MsgPack.Encode(esc)
		if err != nil {
			return // nested too deep once escaped
		}
		got, err := codec.MsgPack.Decode(wire)
		if err != nil {
			t.Fatalf("decode: %v", err)
		}
		if back, err = objref.Unescape(got, failing); err != nil || !reflect.DeepEqual(back, v) {
			t.Fatalf("through MessagePack: %v, %v", back, err)
		}
	})
}

// The walks on the values of a small request: what every step pays.
func BenchmarkSmallValues(b *testing.B) {
	args := []any{"hi there!", int64(3), map[string]any{"a": []any{int64(1), "x"}}}
	kwargs := map[string]any{"n": int64(2)}
	result := map[string]any{"user": "bob", "tags": []any{"a", "b"}}
	b.Run("Mentions", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if objref.Mentions(args, kwargs) {
				b.Fatal("no reference here")
			}
		}
	})
	b.Run("Escape", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = objref.Escape(result)
		}
	})
}
