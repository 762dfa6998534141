package codec

import (
	"encoding"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// Normalize converts a Go value into the value model (see the package doc).
//
//   - Signed and unsigned integers become int64; a uint64 above
//     math.MaxInt64 stays uint64. float32 becomes float64; NaN and ±Inf are
//     kept (MessagePack carries them, JSON encoding rejects them).
//   - nil, bool, string and []byte are kept; other slices and arrays become
//     []any, except byte arrays ([N]byte), which become []byte.
//   - Maps whose keys are of string kind, implement encoding.TextMarshaler,
//     or are integers become map[string]any.
//   - Structs become map[string]any keyed by their json tags, following
//     encoding/json: "-" skips a field, omitempty and omitzero drop empty
//     fields, ",string" quotes scalars, unexported fields are skipped and
//     embedded structs are flattened.
//   - Pointers and interfaces are followed; nil becomes nil.
//   - time.Time becomes an RFC 3339 string with nanoseconds; json.Number
//     becomes int64, uint64 or float64.
//   - Other types implementing json.Marshaler are marshalled and decoded
//     again; types implementing encoding.TextMarshaler become strings.
//
// Values already in the model are returned as they are, without reflection;
// a []any or map[string]any is copied only when one of its elements has to
// change. Channels, functions, complex numbers and nesting deeper than
// MaxDepth are errors.
func Normalize(v any) (any, error) {
	out, _, err := normalize(v, 0)
	if err != nil {
		return nil, err
	}
	return out, nil
}

// normalizeError is the error of Normalize. path is built while the
// recursion unwinds, so the happy path never formats it.
type normalizeError struct {
	path string
	msg  string
	err  error
}

func (e *normalizeError) Error() string {
	if e.path == "" {
		return "codec: normalize: " + e.msg
	}
	return "codec: normalize " + strings.TrimPrefix(e.path, ".") + ": " + e.msg
}

func (e *normalizeError) Unwrap() error { return e.err }

func (e *normalizeError) at(seg string) *normalizeError {
	e.path = seg + e.path
	return e
}

func tooDeep() *normalizeError {
	return &normalizeError{msg: fmt.Sprintf("nesting deeper than %d", MaxDepth)}
}

// normalize returns v in the model and whether it differs from v.
func normalize(v any, depth int) (any, bool, *normalizeError) {
	if depth > MaxDepth {
		return nil, false, tooDeep()
	}
	switch t := v.(type) {
	case nil, bool, string, int64, float64, []byte:
		return v, false, nil
	case uint64:
		if t <= math.MaxInt64 {
			return int64(t), true, nil
		}
		return v, false, nil
	case int:
		return int64(t), true, nil
	case int8:
		return int64(t), true, nil
	case int16:
		return int64(t), true, nil
	case int32:
		return int64(t), true, nil
	case uint:
		return fromUint(uint64(t)), true, nil
	case uint8:
		return int64(t), true, nil
	case uint16:
		return int64(t), true, nil
	case uint32:
		return int64(t), true, nil
	case float32:
		return float64(t), true, nil
	case []any:
		var out []any
		for i, e := range t {
			n, changed, err := normalize(e, depth+1)
			if err != nil {
				return nil, false, err.at(indexSeg(i))
			}
			if changed {
				if out == nil {
					out = make([]any, len(t))
					copy(out, t)
				}
				out[i] = n
			}
		}
		if out == nil {
			return v, false, nil
		}
		return out, true, nil
	case map[string]any:
		var out map[string]any
		for k, e := range t {
			n, changed, err := normalize(e, depth+1)
			if err != nil {
				return nil, false, err.at("." + k)
			}
			if changed {
				if out == nil {
					out = maps.Clone(t)
				}
				out[k] = n
			}
		}
		if out == nil {
			return v, false, nil
		}
		return out, true, nil
	case []string:
		if t == nil {
			return nil, true, nil
		}
		out := make([]any, len(t))
		for i, s := range t {
			out[i] = s
		}
		return out, true, nil
	case map[string]string:
		if t == nil {
			return nil, true, nil
		}
		out := make(map[string]any, len(t))
		for k, s := range t {
			out[k] = s
		}
		return out, true, nil
	case json.Number:
		n, err := parseNumber(string(t))
		if err != nil {
			return nil, false, &normalizeError{msg: err.Error(), err: err}
		}
		return n, true, nil
	case time.Time:
		return t.Format(time.RFC3339Nano), true, nil
	}
	out, err := normalizeValue(reflect.ValueOf(v), depth)
	if err != nil {
		return nil, false, err
	}
	return out, true, nil
}

func fromUint(u uint64) any {
	if u <= math.MaxInt64 {
		return int64(u)
	}
	return u
}

func indexSeg(i int) string { return "[" + strconv.Itoa(i) + "]" }

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

// normalizeValue is the reflective half of normalize.
func normalizeValue(rv reflect.Value, depth int) (any, *normalizeError) {
	if depth > MaxDepth {
		return nil, tooDeep()
	}
	if !rv.IsValid() {
		return nil, nil
	}
	switch rv.Kind() {
	case reflect.Pointer, reflect.Interface:
		if rv.IsNil() {
			return nil, nil
		}
	}
	t := rv.Type()
	if hasMethods(t) && rv.CanInterface() {
		ti := infoOf(t)
		switch {
		case ti.isTime:
			return rv.Interface().(time.Time).Format(time.RFC3339Nano), nil
		case ti.marshalJSON:
			return marshalJSON(rv.Interface().(json.Marshaler))
		case ti.marshalJSONPtr && rv.CanAddr():
			return marshalJSON(rv.Addr().Interface().(json.Marshaler))
		case ti.marshalText:
			return marshalText(rv.Interface().(encoding.TextMarshaler))
		case ti.marshalTextPtr && rv.CanAddr():
			return marshalText(rv.Addr().Interface().(encoding.TextMarshaler))
		}
	}
	switch rv.Kind() {
	case reflect.Interface:
		if rv.CanInterface() {
			out, _, err := normalize(rv.Elem().Interface(), depth)
			return out, err
		}
		return normalizeValue(rv.Elem(), depth)
	case reflect.Pointer:
		return normalizeValue(rv.Elem(), depth+1)
	case reflect.Bool:
		return rv.Bool(), nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return rv.Int(), nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return fromUint(rv.Uint()), nil
	case reflect.Float32, reflect.Float64:
		return rv.Float(), nil
	case reflect.String:
		return rv.String(), nil
	case reflect.Slice:
		if rv.IsNil() {
			return nil, nil
		}
		if isBytes(t) {
			return rv.Bytes(), nil
		}
		return normalizeList(rv, depth)
	case reflect.Array:
		if isBytes(t) {
			b := make([]byte, rv.Len())
			for i := range b {
				b[i] = byte(rv.Index(i).Uint())
			}
			return b, nil
		}
		return normalizeList(rv, depth)
	case reflect.Map:
		return normalizeMap(rv, depth)
	case reflect.Struct:
		return normalizeStruct(rv, depth)
	}
	return nil, &normalizeError{msg: "unsupported type " + t.String()}
}

func normalizeList(rv reflect.Value, depth int) (any, *normalizeError) {
	out := make([]any, rv.Len())
	for i := range out {
		n, err := normalizeValue(rv.Index(i), depth+1)
		if err != nil {
			return nil, err.at(indexSeg(i))
		}
		out[i] = n
	}
	return out, nil
}

func normalizeMap(rv reflect.Value, depth int) (any, *normalizeError) {
	if rv.IsNil() {
		return nil, nil
	}
	kt := rv.Type().Key()
	textKey := kt.Kind() != reflect.String && kt.Implements(textMarshalerType)
	out := make(map[string]any, rv.Len())
	it := rv.MapRange()
	for it.Next() {
		k := it.Key()
		var key string
		switch {
		case kt.Kind() == reflect.String:
			key = k.String()
		case textKey:
			if kt.Kind() == reflect.Pointer && k.IsNil() {
				key = ""
				break
			}
			b, err := k.Interface().(encoding.TextMarshaler).MarshalText()
			if err != nil {
				return nil, &normalizeError{msg: "map key: " + err.Error(), err: err}
			}
			key = string(b)
		default:
			switch kt.Kind() {
			case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
				key = strconv.FormatInt(k.Int(), 10)
			case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
				key = strconv.FormatUint(k.Uint(), 10)
			default:
				return nil, &normalizeError{msg: "unsupported map key type " + kt.String()}
			}
		}
		n, err := normalizeValue(it.Value(), depth+1)
		if err != nil {
			return nil, err.at("." + key)
		}
		out[key] = n
	}
	return out, nil
}

func normalizeStruct(rv reflect.Value, depth int) (any, *normalizeError) {
	si := infoOf(rv.Type()).fields
	out := make(map[string]any, len(si.list))
	for i := range si.list {
		f := &si.list[i]
		fv, ok := fieldForRead(rv, f.index)
		if !ok {
			continue
		}
		if f.omitEmpty && isEmptyValue(fv) || f.omitZero && isZeroValue(fv) {
			continue
		}
		if f.quoted {
			if s, ok := quoteScalar(fv); ok {
				out[f.name] = s
				continue
			}
		}
		n, err := normalizeValue(fv, depth+1)
		if err != nil {
			return nil, err.at("." + f.name)
		}
		out[f.name] = n
	}
	return out, nil
}

func marshalJSON(m json.Marshaler) (any, *normalizeError) {
	b, err := m.MarshalJSON()
	if err != nil {
		return nil, &normalizeError{msg: fmt.Sprintf("%T.MarshalJSON: %v", m, err), err: err}
	}
	v, err := JSON.Decode(b)
	if err != nil {
		return nil, &normalizeError{msg: fmt.Sprintf("%T.MarshalJSON: %v", m, err), err: err}
	}
	return v, nil
}

func marshalText(m encoding.TextMarshaler) (any, *normalizeError) {
	b, err := m.MarshalText()
	if err != nil {
		return nil, &normalizeError{msg: fmt.Sprintf("%T.MarshalText: %v", m, err), err: err}
	}
	return string(b), nil
}

// quoteScalar renders a field tagged ",string" as encoding/json does.
func quoteScalar(v reflect.Value) (string, bool) {
	for v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return "", false
		}
		v = v.Elem()
	}
	switch v.Kind() {
	case reflect.Bool:
		return strconv.FormatBool(v.Bool()), true
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return strconv.FormatInt(v.Int(), 10), true
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return strconv.FormatUint(v.Uint(), 10), true
	case reflect.Float32, reflect.Float64:
		return strconv.FormatFloat(v.Float(), 'g', -1, v.Type().Bits()), true
	case reflect.String:
		return strconv.Quote(v.String()), true
	}
	return "", false
}

func isEmptyValue(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Array, reflect.Map, reflect.Slice, reflect.String:
		return v.Len() == 0
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64, reflect.Interface, reflect.Pointer:
		return v.IsZero()
	}
	return false
}

func isZeroValue(v reflect.Value) bool {
	if v.CanInterface() {
		if z, ok := v.Interface().(interface{ IsZero() bool }); ok {
			if v.Kind() == reflect.Pointer && v.IsNil() {
				return true
			}
			return z.IsZero()
		}
	}
	return v.IsZero()
}

// fieldForRead follows index through embedded structs; it reports false when
// an embedded pointer on the way is nil.
func fieldForRead(v reflect.Value, index []int) (reflect.Value, bool) {
	for i, x := range index {
		if i > 0 && v.Kind() == reflect.Pointer {
			if v.IsNil() {
				return reflect.Value{}, false
			}
			v = v.Elem()
		}
		v = v.Field(x)
	}
	return v, true
}
