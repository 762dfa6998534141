package codec

import (
	"github.com/mpreg/mpreg/schema"

	"encoding"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// AssignError is the error of Assign: the value at Path does not fit the Go
// type there. Path is empty for the top value, else a chain of ".key" and
// "[index]" segments such as ".items[2]" or "[1].name". Want names the Go
// type ("int", "[]string", "map", "struct Point"), Got the kind of the value
// ("null", "bool", "number", "string", "binary", "list" or "map"). Msg, when
// set, replaces the default "want <Want>, got <Got>" message.
//
// Error reads "want int, got string" for the top value and
// "name: want int, got string" below it, so that callers can prefix a
// parameter name: "b: want int, got string".
type AssignError struct {
	Path string
	Want string
	Got  string
	Msg  string

	err error
}

// Error implements error.
func (e *AssignError) Error() string {
	msg := e.Msg
	if msg == "" {
		msg = "want " + e.Want + ", got " + e.Got
	}
	if p := strings.TrimPrefix(e.Path, "."); p != "" {
		return p + ": " + msg
	}
	return msg
}

// Unwrap returns the error of a json.Unmarshaler or encoding.TextUnmarshaler
// that refused the value, if any.
func (e *AssignError) Unwrap() error { return e.err }

func (e *AssignError) at(seg string) *AssignError {
	e.Path = seg + e.Path
	return e
}

// Assign stores the value-model tree v into the Go value that dst points to;
// dst must be a non-nil pointer. See AssignValue for the conversions.
func Assign(dst any, v any) error {
	// Fast paths for the common scalar destinations; anything else, and
	// every mismatch, goes through AssignValue.
	switch d := dst.(type) {
	case *any:
		if d != nil {
			*d = v
			return nil
		}
	case *string:
		if s, ok := v.(string); ok && d != nil {
			*d = s
			return nil
		}
	case *int:
		if n, ok := v.(int64); ok && d != nil && int64(int(n)) == n {
			*d = int(n)
			return nil
		}
	case *int64:
		if n, ok := v.(int64); ok && d != nil {
			*d = n
			return nil
		}
	case *float64:
		if d != nil {
			switch n := v.(type) {
			case float64:
				*d = n
				return nil
			case int64:
				*d = float64(n)
				return nil
			}
		}
	case *bool:
		if b, ok := v.(bool); ok && d != nil {
			*d = b
			return nil
		}
	}
	rv := reflect.ValueOf(dst)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return &AssignError{
			Want: "non-nil pointer",
			Got:  fmt.Sprintf("%T", dst),
			Msg:  fmt.Sprintf("codec: Assign needs a non-nil pointer, got %T", dst),
		}
	}
	if err := assign(rv.Elem(), v, 0); err != nil {
		return err
	}
	return nil
}

// AssignValue stores the value-model tree v into dst, which must be
// settable. It converts:
//
//   - int64, uint64 and float64 into any integer or float kind, checking the
//     range; a float with a fractional part does not fit an integer.
//   - string into string kinds; bool into bool kinds.
//   - []byte, or a base64 string (standard encoding, as JSON carries
//     binary), into []byte and [N]byte.
//   - []any into slices and arrays (an array's length must match).
//   - map[string]any into new maps whose keys are of string kind, integers
//     (parsed from the key) or implement encoding.TextUnmarshaler, and into
//     structs by json tag name: an exact match first, then a
//     case-insensitive one as encoding/json does; unknown keys are ignored
//     and fields without a key are left as they are.
//   - nil into the zero pointer, slice, map or interface; nil into any other
//     kind is an error ("want int, got null").
//   - anything into an empty interface, stored as it is.
//   - RFC 3339 strings into time.Time.
//
// Pointers are allocated as needed. Types implementing json.Unmarshaler get
// v encoded as JSON; types implementing encoding.TextUnmarshaler get string
// values. Values outside the model (an int, a []string) are normalized
// when they do not fit as they are. Binary values are copied; lists and maps
// assigned to []any or map[string]any are shared with v.
//
// Errors are *AssignError naming the path of the value at fault.
func AssignValue(dst reflect.Value, v any) error {
	if !dst.CanSet() {
		return &AssignError{Msg: "codec: AssignValue needs a settable destination"}
	}
	if err := assign(dst, v, 0); err != nil {
		return err
	}
	return nil
}

func inModel(v any) bool {
	switch v.(type) {
	case nil, bool, int64, uint64, float64, string, []byte, []any, map[string]any:
		return true
	}
	return false
}

// wantName names a Go type in an AssignError.
func wantName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Struct:
		if t == timeType {
			return "time.Time"
		}
		if t.Name() != "" {
			return "struct " + t.Name()
		}
		return "struct"
	case reflect.Map:
		return "map"
	case reflect.Slice, reflect.Array:
		if t.Name() == "" && t.Elem() == byteType {
			return strings.TrimSuffix(t.String(), "uint8") + "byte"
		}
	}
	return t.String()
}

func mismatch(t reflect.Type, v any) *AssignError {
	return &AssignError{Want: wantName(t), Got: schema.KindOf(v)}
}

func badValue(t reflect.Type, v any, format string, args ...any) *AssignError {
	e := mismatch(t, v)
	e.Msg = "want " + e.Want + ", got " + fmt.Sprintf(format, args...)
	return e
}

func numString(v any) string {
	switch n := v.(type) {
	case float64:
		return strconv.FormatFloat(n, 'g', -1, 64)
	case int64:
		return strconv.FormatInt(n, 10)
	case uint64:
		return strconv.FormatUint(n, 10)
	}
	return fmt.Sprint(v)
}

func outOfRange(t reflect.Type, v any) *AssignError {
	return badValue(t, v, "%s (out of range)", numString(v))
}

func assign(dst reflect.Value, v any, depth int) *AssignError {
	t := dst.Type()
	if depth > MaxDepth {
		e := mismatch(t, v)
		e.Msg = fmt.Sprintf("nesting deeper than %d", MaxDepth)
		return e
	}
	k := t.Kind()
	if hasMethods(t) {
		ti := infoOf(t)
		switch {
		case ti.isTime:
			s, ok := v.(string)
			if !ok {
				return mismatch(t, v)
			}
			tm, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				e := badValue(t, v, "%q (not an RFC 3339 time)", s)
				e.err = err
				return e
			}
			dst.Set(reflect.ValueOf(tm))
			return nil
		case ti.unmarshalJSON && k != reflect.Pointer && dst.CanAddr():
			return assignUnmarshalJSON(dst, v)
		case ti.unmarshalText && k != reflect.Pointer && dst.CanAddr():
			if s, ok := v.(string); ok {
				u := dst.Addr().Interface().(encoding.TextUnmarshaler)
				if err := u.UnmarshalText([]byte(s)); err != nil {
					e := badValue(t, v, "%q (%v)", s, err)
					e.err = err
					return e
				}
				return nil
			}
		}
	}
	switch k {
	case reflect.Interface:
		if v == nil {
			dst.SetZero()
			return nil
		}
		rv := reflect.ValueOf(v)
		if t.NumMethod() == 0 || rv.Type().Implements(t) {
			dst.Set(rv)
			return nil
		}
		return mismatch(t, v)
	case reflect.Pointer:
		if v == nil {
			dst.SetZero()
			return nil
		}
		if dst.IsNil() {
			dst.Set(reflect.New(t.Elem()))
		}
		return assign(dst.Elem(), v, depth+1)
	}
	if v != nil && reflect.TypeOf(v) == t && t != bytesType {
		dst.Set(reflect.ValueOf(v))
		return nil
	}
	switch k {
	case reflect.Bool:
		if b, ok := v.(bool); ok {
			dst.SetBool(b)
			return nil
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if ok, err := assignInt(dst, v); ok || err != nil {
			return err
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		if ok, err := assignUint(dst, v); ok || err != nil {
			return err
		}
	case reflect.Float32, reflect.Float64:
		var f float64
		switch n := v.(type) {
		case float64:
			f = n
		case int64:
			f = float64(n)
		case uint64:
			f = float64(n)
		default:
			return assignOther(dst, v, depth)
		}
		if dst.OverflowFloat(f) {
			return outOfRange(t, v)
		}
		dst.SetFloat(f)
		return nil
	case reflect.String:
		if s, ok := v.(string); ok {
			dst.SetString(s)
			return nil
		}
	case reflect.Slice:
		if v == nil {
			dst.SetZero()
			return nil
		}
		if isBytes(t) {
			if b, ok, err := binaryValue(t, v); ok || err != nil {
				if err != nil {
					return err
				}
				dst.SetBytes(b)
				return nil
			}
		}
		l, ok := v.([]any)
		if !ok {
			break
		}
		s := reflect.MakeSlice(t, len(l), len(l))
		for i, e := range l {
			if err := assign(s.Index(i), e, depth+1); err != nil {
				return err.at(indexSeg(i))
			}
		}
		dst.Set(s)
		return nil
	case reflect.Array:
		n := t.Len()
		if isBytes(t) {
			if b, ok, err := binaryValue(t, v); ok || err != nil {
				if err != nil {
					return err
				}
				if len(b) != n {
					return badValue(t, v, "%d bytes", len(b))
				}
				for i, c := range b {
					dst.Index(i).SetUint(uint64(c))
				}
				return nil
			}
		}
		l, ok := v.([]any)
		if !ok {
			break
		}
		if len(l) != n {
			return badValue(t, v, "list of %d", len(l))
		}
		for i, e := range l {
			if err := assign(dst.Index(i), e, depth+1); err != nil {
				return err.at(indexSeg(i))
			}
		}
		return nil
	case reflect.Map:
		if v == nil {
			dst.SetZero()
			return nil
		}
		m, ok := v.(map[string]any)
		if !ok {
			break
		}
		return assignMap(dst, m, depth)
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			break
		}
		return assignStruct(dst, m, depth)
	default:
		e := mismatch(t, v)
		e.Msg = "unsupported destination type " + t.String()
		return e
	}
	return assignOther(dst, v, depth)
}

// assignOther handles a value that did not fit dst as it is: a value
// outside the model is normalized and tried again; anything else is a
// mismatch.
func assignOther(dst reflect.Value, v any, depth int) *AssignError {
	if !inModel(v) {
		if n, err := Normalize(v); err == nil && inModel(n) {
			return assign(dst, n, depth)
		}
	}
	return mismatch(dst.Type(), v)
}

func assignInt(dst reflect.Value, v any) (bool, *AssignError) {
	t := dst.Type()
	var i int64
	switch n := v.(type) {
	case int64:
		i = n
	case uint64:
		if n > math.MaxInt64 {
			return false, outOfRange(t, v)
		}
		i = int64(n)
	case float64:
		if n != math.Trunc(n) || math.IsInf(n, 0) {
			return false, badValue(t, v, "%s (not an integer)", numString(v))
		}
		if n < -(1<<63) || n >= 1<<63 {
			return false, outOfRange(t, v)
		}
		i = int64(n)
	default:
		return false, nil
	}
	if dst.OverflowInt(i) {
		return false, outOfRange(t, v)
	}
	dst.SetInt(i)
	return true, nil
}

func assignUint(dst reflect.Value, v any) (bool, *AssignError) {
	t := dst.Type()
	var u uint64
	switch n := v.(type) {
	case int64:
		if n < 0 {
			return false, outOfRange(t, v)
		}
		u = uint64(n)
	case uint64:
		u = n
	case float64:
		if n != math.Trunc(n) || math.IsInf(n, 0) {
			return false, badValue(t, v, "%s (not an integer)", numString(v))
		}
		if n < 0 || n >= 1<<64 {
			return false, outOfRange(t, v)
		}
		u = uint64(n)
	default:
		return false, nil
	}
	if dst.OverflowUint(u) {
		return false, outOfRange(t, v)
	}
	dst.SetUint(u)
	return true, nil
}

// binaryValue reads v as bytes for a []byte or [N]byte destination: a copy of a
// []byte, or a decoded base64 string. ok is false for other kinds of v.
func binaryValue(t reflect.Type, v any) (b []byte, ok bool, err *AssignError) {
	switch x := v.(type) {
	case []byte:
		return append([]byte{}, x...), true, nil
	case string:
		b, e := base64.StdEncoding.DecodeString(x)
		if e != nil {
			err := badValue(t, v, "string (not base64)")
			err.err = e
			return nil, false, err
		}
		return b, true, nil
	}
	return nil, false, nil
}

func assignMap(dst reflect.Value, m map[string]any, depth int) *AssignError {
	t := dst.Type()
	kt := t.Key()
	textKey := reflect.PointerTo(kt).Implements(textUnmarshalerType)
	switch {
	case textKey, kt.Kind() == reflect.String:
	default:
		switch kt.Kind() {
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
			reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		default:
			e := mismatch(t, m)
			e.Msg = "unsupported map key type " + kt.String()
			return e
		}
	}
	out := reflect.MakeMapWithSize(t, len(m))
	key := reflect.New(kt).Elem()
	elem := reflect.New(t.Elem()).Elem()
	for k, e := range m {
		if err := mapKey(key, k, textKey); err != nil {
			return err.at("." + k)
		}
		elem.SetZero()
		if err := assign(elem, e, depth+1); err != nil {
			return err.at("." + k)
		}
		out.SetMapIndex(key, elem)
	}
	dst.Set(out)
	return nil
}

func mapKey(key reflect.Value, k string, textKey bool) *AssignError {
	kt := key.Type()
	bad := func(err error) *AssignError {
		e := &AssignError{Want: "map key of type " + kt.String(), Got: "key " + strconv.Quote(k), err: err}
		return e
	}
	if textKey {
		key.SetZero()
		if err := key.Addr().Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(k)); err != nil {
			return bad(err)
		}
		return nil
	}
	switch kt.Kind() {
	case reflect.String:
		key.SetString(k)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(k, 10, kt.Bits())
		if err != nil {
			return bad(err)
		}
		key.SetInt(n)
	default:
		n, err := strconv.ParseUint(k, 10, kt.Bits())
		if err != nil {
			return bad(err)
		}
		key.SetUint(n)
	}
	return nil
}

func assignStruct(dst reflect.Value, m map[string]any, depth int) *AssignError {
	si := infoOf(dst.Type()).fields
	fold := false
	for k, e := range m {
		i, ok := si.byName[k]
		if !ok {
			fold = true
			continue
		}
		if err := assignField(dst, &si.list[i], e, depth); err != nil {
			return err
		}
	}
	if !fold {
		return nil
	}
	// Keys without an exact match: match case-insensitively, unless the
	// field's exact key is also present (the exact key wins).
	for k, e := range m {
		if _, ok := si.byName[k]; ok {
			continue
		}
		i, ok := si.byFold[strings.ToLower(k)]
		if !ok {
			continue
		}
		f := &si.list[i]
		if _, ok := m[f.name]; ok {
			continue
		}
		if err := assignField(dst, f, e, depth); err != nil {
			return err
		}
	}
	return nil
}

func assignField(dst reflect.Value, f *field, v any, depth int) *AssignError {
	fv, err := fieldForWrite(dst, f.index)
	if err != nil {
		return err.at("." + f.name)
	}
	if !fv.CanSet() {
		e := mismatch(fv.Type(), v)
		e.Msg = "cannot set a field promoted from an unexported embedded struct"
		return e.at("." + f.name)
	}
	if f.quoted {
		if s, ok := v.(string); ok {
			if q, ok := unquoteScalar(fv, s); ok {
				v = q
			}
		}
	}
	if err := assign(fv, v, depth+1); err != nil {
		return err.at("." + f.name)
	}
	return nil
}

// unquoteScalar reads a string for a field tagged ",string".
func unquoteScalar(fv reflect.Value, s string) (any, bool) {
	t := fv.Type()
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		return b, err == nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64:
		n, err := parseNumber(s)
		return n, err == nil
	case reflect.String:
		u, err := strconv.Unquote(s)
		return u, err == nil
	}
	return nil, false
}

// fieldForWrite follows index through embedded structs, allocating nil
// embedded pointers.
func fieldForWrite(v reflect.Value, index []int) (reflect.Value, *AssignError) {
	for i, x := range index {
		if i > 0 && v.Kind() == reflect.Pointer {
			if v.IsNil() {
				if !v.CanSet() {
					return reflect.Value{}, &AssignError{
						Msg: "cannot set a field of a nil embedded pointer to unexported " + v.Type().Elem().String(),
					}
				}
				v.Set(reflect.New(v.Type().Elem()))
			}
			v = v.Elem()
		}
		v = v.Field(x)
	}
	return v, nil
}

func assignUnmarshalJSON(dst reflect.Value, v any) *AssignError {
	t := dst.Type()
	b, err := JSON.Encode(v)
	if err != nil {
		e := mismatch(t, v)
		e.Msg = fmt.Sprintf("want %s, got %s that does not encode as JSON: %v", e.Want, e.Got, err)
		e.err = err
		return e
	}
	if err := dst.Addr().Interface().(json.Unmarshaler).UnmarshalJSON(b); err != nil {
		e := mismatch(t, v)
		e.Msg = fmt.Sprintf("want %s, got %s: %v", e.Want, e.Got, err)
		e.err = err
		return e
	}
	return nil
}
