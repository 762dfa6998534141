package codec

// SizeWithin returns a lower bound of the encoded size of v in either codec
// (string and binary lengths, one byte per scalar and per element), walking
// no further than needed: ok is false as soon as the bound passes limit.
// Trees that share subtrees (one result used twice by a later step) count
// each use, so a value that would expand to gigabytes is caught after
// limit bytes of walking, before any encoder builds it. Values outside the
// value model and WireValue count as small.
func SizeWithin(v any, limit int) (size int, ok bool) {
	s := sizer{limit: limit}
	s.add(v, 0)
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
		s.n++
		for _, e := range t {
			s.add(e, depth+1)
			if s.n > s.limit {
				return
			}
		}
	case map[string]any:
		s.n++
		for k, e := range t {
			s.n += len(k) + 1
			s.add(e, depth+1)
			if s.n > s.limit {
				return
			}
		}
	case WireValue:
		s.add(treeOf(t), depth+1)
	default:
		s.n++
	}
}
