package codec

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"reflect"
	"slices"
	"strconv"
	"unicode/utf8"
)

type jsonCodec struct{}

func (jsonCodec) ContentType() string { return JSONType }

// Encode encodes v as compact JSON without HTML escaping. Map keys are
// sorted. A float64 with an integral value keeps a fraction ("1.0") so that
// it decodes as a float64 again; []byte becomes a base64 string. Values
// outside the model go through Normalize (json struct tags, marshalers).
func (jsonCodec) Encode(v any) ([]byte, error) {
	b, err := appendJSON(make([]byte, 0, 128), v, 0)
	if err != nil {
		return nil, fmt.Errorf("codec: encode json: %w", err)
	}
	return b, nil
}

func appendJSON(b []byte, v any, depth int) ([]byte, error) {
	if depth > MaxDepth {
		return nil, fmt.Errorf("nesting deeper than %d", MaxDepth)
	}
	switch t := v.(type) {
	case nil:
		return append(b, "null"...), nil
	case bool:
		return strconv.AppendBool(b, t), nil
	case string:
		return appendString(b, t), nil
	case int64:
		return strconv.AppendInt(b, t, 10), nil
	case uint64:
		return strconv.AppendUint(b, t, 10), nil
	case float64:
		return appendFloat(b, t)
	case []byte:
		if t == nil {
			return append(b, "null"...), nil
		}
		b = append(b, '"')
		b = base64.StdEncoding.AppendEncode(b, t)
		return append(b, '"'), nil
	case []any:
		if t == nil {
			return append(b, "null"...), nil
		}
		b = append(b, '[')
		for i, e := range t {
			if i > 0 {
				b = append(b, ',')
			}
			var err error
			if b, err = appendJSON(b, e, depth+1); err != nil {
				return nil, err
			}
		}
		return append(b, ']'), nil
	case map[string]any:
		if t == nil {
			return append(b, "null"...), nil
		}
		b = append(b, '{')
		for i, k := range slices.Sorted(maps.Keys(t)) {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, k)
			b = append(b, ':')
			var err error
			if b, err = appendJSON(b, t[k], depth+1); err != nil {
				return nil, err
			}
		}
		return append(b, '}'), nil
	}
	return appendReflect(b, reflect.ValueOf(v), depth)
}

// appendReflect encodes a value outside the model. Structs are written
// field by field in declaration order, as encoding/json does; everything
// else goes through Normalize.
func appendReflect(b []byte, rv reflect.Value, depth int) ([]byte, error) {
	if depth > MaxDepth {
		return nil, fmt.Errorf("nesting deeper than %d", MaxDepth)
	}
	for rv.Kind() == reflect.Pointer || rv.Kind() == reflect.Interface {
		if rv.IsNil() {
			return append(b, "null"...), nil
		}
		if rv.Kind() == reflect.Pointer && infoOf(rv.Type()).marshals() {
			break
		}
		rv = rv.Elem()
		depth++
	}
	if rv.Kind() != reflect.Struct || infoOf(rv.Type()).marshals() {
		n, err := normalizeValue(rv, depth)
		if err != nil {
			return nil, err
		}
		return appendJSON(b, n, depth)
	}
	b = append(b, '{')
	first := true
	si := infoOf(rv.Type()).fields
	for i := range si.list {
		f := &si.list[i]
		fv, ok := fieldForRead(rv, f.index)
		if !ok || f.omitEmpty && isEmptyValue(fv) || f.omitZero && isZeroValue(fv) {
			continue
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = appendString(b, f.name)
		b = append(b, ':')
		if f.quoted {
			if s, ok := quoteScalar(fv); ok {
				b = appendString(b, s)
				continue
			}
		}
		var err error
		if fv.Kind() != reflect.Interface && fv.CanInterface() && !hasMethods(fv.Type()) {
			b, err = appendJSON(b, fv.Interface(), depth+1)
		} else {
			b, err = appendReflect(b, fv, depth+1)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.name, err)
		}
	}
	return append(b, '}'), nil
}

// appendFloat formats f as encoding/json does, and adds ".0" to integral
// values so that they read back as floats.
func appendFloat(b []byte, f float64) ([]byte, error) {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return nil, fmt.Errorf("unsupported float value %v", f)
	}
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	start := len(b)
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// Clean up e-09 to e-9, as encoding/json does.
		if n := len(b); n-start >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
		return b, nil
	}
	if bytes.IndexByte(b[start:], '.') < 0 {
		b = append(b, '.', '0')
	}
	return b, nil
}

const hexDigits = "0123456789abcdef"

// appendString quotes s as encoding/json does without HTML escaping:
// control characters, U+2028 and U+2029 are escaped, and invalid UTF-8
// becomes U+FFFD.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// Decode decodes one JSON value. Numbers that are integers fitting int64
// become int64, all others float64.
func (c jsonCodec) Decode(data []byte) (any, error) {
	v, _, err := c.decode(data, MaxDecoded)
	return v, err
}

func (c jsonCodec) decode(data []byte, limit int64) (any, int64, error) {
	cost, err := jsonCost(data, limit)
	if err != nil {
		return nil, cost, decodeErr(c, err)
	}
	v, err := c.decodeTree(data)
	return v, cost, err
}

func (c jsonCodec) decodeTree(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, decodeErr(c, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, decodeErr(c, fmt.Errorf("trailing data after the value"))
	}
	out, err := fromJSON(v, 0)
	if err != nil {
		return nil, decodeErr(c, err)
	}
	return out, nil
}

func fromJSON(v any, depth int) (any, error) {
	if depth > MaxDepth {
		return nil, fmt.Errorf("nesting deeper than %d", MaxDepth)
	}
	switch t := v.(type) {
	case json.Number:
		return parseNumber(string(t))
	case []any:
		for i, e := range t {
			n, err := fromJSON(e, depth+1)
			if err != nil {
				return nil, err
			}
			t[i] = n
		}
		return t, nil
	case map[string]any:
		for k, e := range t {
			n, err := fromJSON(e, depth+1)
			if err != nil {
				return nil, err
			}
			t[k] = n
		}
		return t, nil
	}
	return v, nil
}
