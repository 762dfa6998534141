package codec

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/mpreg/mpreg/schema"
)

// Normalize converts a Go value into the value model (see the package
// doc). Model values are kept without reflection (a list or map is copied
// only if an element changes; a nil one becomes nil); Go integers become
// int64 (uint64 above math.MaxInt64 aside), float32 float64; unnamed
// slices ([]byte kinds aside) convert element by element, so that
// []float64 stays floats; a schema.Wire becomes its Tree. Anything else
// (structs, maps, pointers, time.Time, json.Number) becomes what
// encoding/json marshals it to, read back: its tags and marshalers decide,
// and integral floats and binary inside become integers and base64 text as
// in that JSON. Nesting past MaxDepth and what encoding/json refuses are
// errors.
func Normalize(v any) (any, error) {
	out, _, err := modeModel.normalize(v, 0)
	if err != nil {
		return nil, fmt.Errorf("codec: normalize: %w", err)
	}
	return out, nil
}

// mode is what normalize prepares a tree for: the model, or one encoder.
type mode uint8

const (
	modeModel mode = iota
	modeJSON       // float64 becomes jsonFloat, which keeps a fraction
)

// normalize returns v in the model (prepared for m) and whether it
// differs from v.
func (m mode) normalize(v any, depth int) (any, bool, error) {
	if depth > MaxDepth {
		return nil, false, errTooDeep
	}
	switch t := v.(type) {
	case nil, bool, int64, string, []byte:
		return v, false, nil
	case float64:
		if m == modeJSON {
			return jsonFloat(t), true, nil
		}
		return v, false, nil
	case uint64:
		return fromUint(t), t <= math.MaxInt64, nil
	case int:
		return int64(t), true, nil
	case float32:
		n, _, err := m.normalize(float64(t), depth)
		return n, true, err
	case []any:
		if t == nil {
			return nil, true, nil
		}
		out, err := m.list(t, depth)
		if out == nil || err != nil {
			return v, false, err
		}
		return out, true, nil
	case map[string]any:
		if t == nil {
			return nil, true, nil
		}
		out, err := m.object(t, depth)
		if out == nil || err != nil {
			return v, false, err
		}
		return out, true, nil
	}
	out, err := m.other(v, depth)
	return out, true, err
}

// other normalizes a value outside the model.
func (m mode) other(v any, depth int) (any, error) {
	if w, ok := v.(schema.Wire); ok {
		n, _, err := m.normalize(schema.Tree(w), depth)
		return n, err
	}
	if rv := reflect.ValueOf(v); rv.Kind() == reflect.Slice && rv.Type().Name() == "" && !rv.IsNil() {
		if rv.Type().Elem().Kind() == reflect.Uint8 {
			return rv.Bytes(), nil
		}
		out := make([]any, rv.Len())
		for i := range out {
			out[i] = rv.Index(i).Interface()
		}
		n, _, err := m.normalize(out, depth)
		return n, err
	}
	tree, err := viaJSON(v)
	if err != nil {
		return nil, err
	}
	n, _, err := m.normalize(tree, depth)
	return n, err
}

// list returns a normalized copy of l, or nil when l needs no change.
func (m mode) list(l []any, depth int) ([]any, error) {
	var out []any
	for i, e := range l {
		n, changed, err := m.normalize(e, depth+1)
		if err != nil {
			return nil, fmt.Errorf("[%d]: %w", i, err)
		}
		if changed {
			if out == nil {
				out = slices.Clone(l)
			}
			out[i] = n
		}
	}
	return out, nil
}

// object returns a normalized copy of o, or nil when o needs no change.
func (m mode) object(o map[string]any, depth int) (map[string]any, error) {
	var out map[string]any
	for k, e := range o {
		n, changed, err := m.normalize(e, depth+1)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", schema.Clip(k), err)
		}
		if changed {
			if out == nil {
				out = maps.Clone(o)
			}
			out[k] = n
		}
	}
	return out, nil
}

// validUTF8 replaces each byte of s that is not UTF-8 with U+FFFD, as
// encoding/json does, so that both codecs carry the same text.
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	for _, r := range s { // each bad byte ranges as one U+FFFD
		b.WriteRune(r)
	}
	return b.String()
}

// viaJSON returns what encoding/json makes of v, as a tree.
func viaJSON(v any) (any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return JSON.Decode(b)
}

func fromUint(u uint64) any {
	if u <= math.MaxInt64 {
		return int64(u)
	}
	return u
}

// parseNumber reads a JSON number: int64 when it is an integer that fits,
// uint64 above math.MaxInt64, float64 otherwise.
func parseNumber(s string) (any, error) {
	if i, err := strconv.ParseInt(s, 10, 64); err == nil {
		return i, nil
	}
	if u, err := strconv.ParseUint(s, 10, 64); err == nil {
		return u, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return nil, fmt.Errorf("number %s: %w", s, err)
	}
	return f, nil
}
