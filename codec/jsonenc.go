package codec

import (
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/mpreg/mpreg/schema"
)

// jsonEncoder writes a tree as JSON, byte for byte as encoding/json (HTML
// escaping off) writes the normalized tree (tested and fuzzed against it):
// keys sorted, binary in base64, integral floats with a fraction ("1.0").
// Wire structs are written from their fields, without a map; values
// outside the model are normalized first.
type jsonEncoder struct {
	b []byte
}

var errNotFinite = errors.New("a float that is not finite")

func (e *jsonEncoder) value(v any, depth int) error {
	if depth > MaxDepth {
		return errTooDeep
	}
	switch t := v.(type) {
	case nil:
		e.b = append(e.b, "null"...)
	case bool:
		e.b = strconv.AppendBool(e.b, t)
	case int64:
		e.b = strconv.AppendInt(e.b, t, 10)
	case uint64:
		e.b = strconv.AppendUint(e.b, t, 10)
	case float64:
		return e.float(t)
	case string:
		e.str(t)
	case []byte:
		if t == nil {
			e.b = append(e.b, "null"...)
			return nil
		}
		e.b = append(e.b, '"')
		e.b = base64.StdEncoding.AppendEncode(e.b, t)
		e.b = append(e.b, '"')
	case []any:
		return e.list(t, depth)
	case []string:
		if t == nil {
			e.b = append(e.b, "null"...)
			return nil
		}
		e.b = append(e.b, '[')
		for i, x := range t {
			if i > 0 {
				e.b = append(e.b, ',')
			}
			e.str(x)
		}
		e.b = append(e.b, ']')
	case map[string]any:
		return e.object(t, depth)
	case schema.Wire:
		return e.wire(t, depth)
	default:
		n, _, err := modeModel.normalize(v, depth)
		if err != nil {
			return err
		}
		return e.value(n, depth)
	}
	return nil
}

func (e *jsonEncoder) list(l []any, depth int) error {
	if l == nil {
		e.b = append(e.b, "null"...)
		return nil
	}
	e.b = append(e.b, '[')
	for i, x := range l {
		if i > 0 {
			e.b = append(e.b, ',')
		}
		if err := e.value(x, depth+1); err != nil {
			return fmt.Errorf("[%d]: %w", i, err)
		}
	}
	e.b = append(e.b, ']')
	return nil
}

// object writes a map with its keys sorted.
func (e *jsonEncoder) object(m map[string]any, depth int) error {
	if m == nil {
		e.b = append(e.b, "null"...)
		return nil
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	e.b = append(e.b, '{')
	for i, k := range keys {
		if i > 0 {
			e.b = append(e.b, ',')
		}
		e.str(k)
		e.b = append(e.b, ':')
		if err := e.value(m[k], depth+1); err != nil {
			return fmt.Errorf("%s: %w", schema.Clip(k), err)
		}
	}
	e.b = append(e.b, '}')
	return nil
}

// field is one key of a wire struct.
type field struct {
	key string
	v   any
}

// fieldList collects a wire struct's fields.
type fieldList []field

func (l *fieldList) Str(k, v string)       { *l = append(*l, field{k, v}) }
func (l *fieldList) Int(k string, v int64) { *l = append(*l, field{k, v}) }
func (l *fieldList) Any(k string, v any)   { *l = append(*l, field{k, v}) }

func (e *jsonEncoder) wire(w schema.Wire, depth int) error {
	if schema.IsNil(w) {
		e.b = append(e.b, "null"...)
		return nil
	}
	var buf [16]field
	l := fieldList(buf[:0])
	w.WriteFields(&l)
	slices.SortFunc(l, func(a, b field) int { return strings.Compare(a.key, b.key) })
	e.b = append(e.b, '{')
	for i, f := range l {
		if i > 0 {
			e.b = append(e.b, ',')
		}
		e.str(f.key)
		e.b = append(e.b, ':')
		if err := e.value(f.v, depth+1); err != nil {
			return fmt.Errorf("%s: %w", f.key, err)
		}
	}
	e.b = append(e.b, '}')
	return nil
}

// float writes f as encoding/json does, with ".0" when it would read as
// an integer.
func (e *jsonEncoder) float(f float64) error {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return fmt.Errorf("%w: %v", errNotFinite, f)
	}
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	start := len(e.b)
	e.b = strconv.AppendFloat(e.b, f, format, -1, 64)
	if format == 'e' {
		// e-09 becomes e-9, as encoding/json writes it.
		if n := len(e.b); n-start >= 4 && e.b[n-4] == 'e' && e.b[n-3] == '-' && e.b[n-2] == '0' {
			e.b[n-2] = e.b[n-1]
			e.b = e.b[:n-1]
		}
		return nil
	}
	if !slices.Contains(e.b[start:], '.') {
		e.b = append(e.b, '.', '0')
	}
	return nil
}

const hexDigits = "0123456789abcdef"

// str writes s quoted as encoding/json does without HTML escaping.
func (e *jsonEncoder) str(s string) {
	e.b = append(e.b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			e.b = append(e.b, s[start:i]...)
			switch c {
			case '"', '\\':
				e.b = append(e.b, '\\', c)
			case '\b':
				e.b = append(e.b, '\\', 'b')
			case '\f':
				e.b = append(e.b, '\\', 'f')
			case '\n':
				e.b = append(e.b, '\\', 'n')
			case '\r':
				e.b = append(e.b, '\\', 'r')
			case '\t':
				e.b = append(e.b, '\\', 't')
			default:
				e.b = append(e.b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			e.b = append(e.b, s[start:i]...)
			e.b = append(e.b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			e.b = append(e.b, s[start:i]...)
			e.b = append(e.b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	e.b = append(e.b, s[start:]...)
	e.b = append(e.b, '"')
}
