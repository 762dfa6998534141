package schema

import "math"

// Kind names the kind of a value as error messages do: "null", "bool",
// "number", "string", "binary", "list" or "map" (see KindOf). A Reader
// reports "" after a decoding error.
type Kind string

// The kinds of the value model.
const (
	KindNull   Kind = "null"
	KindBool   Kind = "bool"
	KindNumber Kind = "number"
	KindString Kind = "string"
	KindBinary Kind = "binary"
	KindList   Kind = "list"
	KindMap    Kind = "map"
)

// Reader reads one encoded value token by token, so that the Read
// functions fill a wire struct straight from a body's bytes: only the
// values a struct holds as trees (args, kwargs, results, details) become
// trees. codec provides Readers over JSON and MessagePack bytes, bounded
// as its decoders are (depth, decoded memory); TreeReader walks a tree
// already decoded.
//
// Each value is read exactly once, by one of Map, List, Str, Int, Bool,
// Value or Skip, after Next has said its kind. A decoding error is kept
// (Err): from then on Next reports "", Key and More report the end, and
// the rest read nothing.
type Reader interface {
	// Next reports the kind of the next value without reading it.
	Next() Kind
	// Map opens the next value, a map, and returns its number of
	// entries, or -1 when the encoding does not say.
	Map() int
	// Key reads the next key of the innermost open map, the reader then
	// on its value; at the map's end it closes the map and reports false.
	Key() (string, bool)
	// List opens the next value, a list, and returns its length, or -1.
	List() int
	// More reports whether the innermost open list has another element,
	// the reader then on it; at the list's end it closes the list.
	More() bool
	// Str reads a string.
	Str() string
	// Int reads a number: false when it is not an integer that fits int64.
	Int() (int64, bool)
	// Bool reads a boolean.
	Bool() bool
	// Value reads the next value as a tree of the value model.
	Value() any
	// Skip reads the next value and drops it.
	Skip()
	// Err is the first decoding error, if any.
	Err() error
}

// IntOf converts a decoded number to int64 when it is an integer that fits.
func IntOf(v any) (int64, bool) {
	switch n := v.(type) {
	case int64:
		return n, true
	case int:
		return int64(n), true
	case uint64:
		if n <= math.MaxInt64 {
			return int64(n), true
		}
	case float64:
		if n == math.Trunc(n) && n >= -(1<<63) && n < 1<<63 {
			return int64(n), true
		}
	}
	return 0, false
}

// TreeReader returns a Reader over a value already decoded (or built in
// Go): the Parse functions read trees through it.
func TreeReader(v any) Reader { return &treeReader{v: v} }

// treeReader walks a tree. v is the next value; the frames are the open
// maps and lists.
type treeReader struct {
	v      any
	frames []treeFrame
}

type treeFrame struct {
	m    map[string]any
	keys []string
	l    []any
	i    int
}

var _ Reader = (*treeReader)(nil)

func (t *treeReader) Next() Kind { return Kind(KindOf(t.v)) }

func (t *treeReader) Map() int {
	m, _ := t.v.(map[string]any)
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	t.frames = append(t.frames, treeFrame{m: m, keys: keys})
	return len(m)
}

func (t *treeReader) Key() (string, bool) {
	f := &t.frames[len(t.frames)-1]
	if f.i == len(f.keys) {
		t.frames = t.frames[:len(t.frames)-1]
		return "", false
	}
	k := f.keys[f.i]
	f.i++
	t.v = f.m[k]
	return k, true
}

func (t *treeReader) List() int {
	l, _ := t.v.([]any)
	t.frames = append(t.frames, treeFrame{l: l})
	return len(l)
}

func (t *treeReader) More() bool {
	f := &t.frames[len(t.frames)-1]
	if f.i == len(f.l) {
		t.frames = t.frames[:len(t.frames)-1]
		return false
	}
	t.v = f.l[f.i]
	f.i++
	return true
}

func (t *treeReader) Str() string {
	s, _ := t.v.(string)
	return s
}

func (t *treeReader) Int() (int64, bool) { return IntOf(t.v) }

func (t *treeReader) Bool() bool {
	b, _ := t.v.(bool)
	return b
}

func (t *treeReader) Value() any { return t.v }
func (t *treeReader) Skip()      {}
func (t *treeReader) Err() error { return nil }
