package codec

import (
	"sync"

	"github.com/mpreg/mpreg/schema"
)

// SizeWithin returns a lower bound of v's encoded size in either codec
// (string and binary lengths, a byte per scalar and element), walking no
// further than needed: ok is false once it passes limit. Shared subtrees
// count each use, so a value that would expand to gigabytes is caught
// before any encoder builds it. Values outside the model count as small.
func SizeWithin(v any, limit int) (size int, ok bool) {
	s := sizer{limit: limit}
	s.add(v, 0)
	return s.n, s.n <= limit
}

// SizeWithinList is SizeWithin of args as a list, without boxing the
// slice into an interface (an allocation per call).
func SizeWithinList(args []any, limit int) (size int, ok bool) {
	s := sizer{limit: limit}
	s.list(args, 0)
	return s.n, s.n <= limit
}

// SizeWithinMap is SizeWithin of kwargs as a map (see SizeWithinList).
func SizeWithinMap(kwargs map[string]any, limit int) (size int, ok bool) {
	s := sizer{limit: limit}
	s.dict(kwargs, 0)
	return s.n, s.n <= limit
}

type sizer struct {
	n, limit int
}

func (s *sizer) add(v any, depth int) {
	if s.n > s.limit || depth > MaxDepth {
		return
	}
	switch t := v.(type) {
	case string:
		s.n += len(t) + 1
	case []byte:
		s.n += len(t) + 1
	case []any:
		s.list(t, depth)
	case map[string]any:
		s.dict(t, depth)
	case schema.Wire:
		if !schema.IsNil(t) {
			f := fieldSizers.Get().(*fieldSizer) // it escapes through WriteFields
			f.sizer, f.depth = *s, depth+1
			t.WriteFields(f)
			s.n = f.n
			fieldSizers.Put(f)
		}
	default:
		s.n++
	}
}

func (s *sizer) list(l []any, depth int) {
	if s.n > s.limit || depth > MaxDepth {
		return
	}
	s.n++
	for i := 0; i < len(l) && s.n <= s.limit; i++ {
		s.add(l[i], depth+1)
	}
}

func (s *sizer) dict(m map[string]any, depth int) {
	if s.n > s.limit || depth > MaxDepth {
		return
	}
	s.n++
	for k, e := range m {
		if s.n += len(k) + 1; s.n > s.limit {
			return
		}
		s.add(e, depth+1)
	}
}

// fieldSizers keeps the fieldSizers that WriteFields would otherwise put
// on the heap for every wire struct sized.
var fieldSizers = sync.Pool{New: func() any { return new(fieldSizer) }}

// fieldSizer sizes a wire struct's fields.
type fieldSizer struct {
	sizer
	depth int
}

func (f *fieldSizer) Str(k, v string)       { f.n += len(k) + len(v) + 2 }
func (f *fieldSizer) Int(k string, _ int64) { f.n += len(k) + 2 }
func (f *fieldSizer) Any(k string, v any)   { f.n += len(k) + 1; f.add(v, f.depth) }
