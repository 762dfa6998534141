package codec

import (
	"errors"
	"fmt"
	"unicode/utf16"
	"unicode/utf8"
)

// jsonDecoder reads one JSON text into the value tree in one pass, as
// encoding/json with UseNumber followed by the number rule of Decode would
// (fuzzed against it): integers that fit int64 (else uint64) become that,
// other numbers float64; later duplicate keys win; invalid UTF-8 and lone
// surrogates become U+FFFD; nesting deeper than MaxDepth fails. It spares
// a request the reflection and the second walk over the tree.
type jsonDecoder struct {
	b []byte
	i int
}

var errJSONSyntax = errors.New("invalid JSON")

// jsonLiterals are JSON's three literal names and their values.
var jsonLiterals = [...]struct {
	text string
	v    any
}{{"true", true}, {"false", false}, {"null", nil}}

func (d *jsonDecoder) fail(what string) error {
	return fmt.Errorf("%w: %s at offset %d", errJSONSyntax, what, d.i)
}

func (d *jsonDecoder) space() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

// document reads the whole text: one value and white space.
func (d *jsonDecoder) document() (any, error) {
	v, err := d.value(0)
	if err != nil {
		return nil, err
	}
	if d.space(); d.i != len(d.b) {
		return nil, errors.New("trailing data after the value")
	}
	return v, nil
}

func (d *jsonDecoder) value(depth int) (any, error) {
	if depth > MaxDepth {
		return nil, errTooDeep
	}
	d.space()
	if d.i >= len(d.b) {
		return nil, d.fail("unexpected end")
	}
	switch c := d.b[d.i]; {
	case c == '{':
		return d.object(depth)
	case c == '[':
		return d.array(depth)
	case c == '"':
		return d.str()
	case c == '-' || c >= '0' && c <= '9':
		return d.number()
	}
	for _, lit := range jsonLiterals {
		if c := d.b[d.i]; c == lit.text[0] && len(d.b)-d.i >= len(lit.text) && string(d.b[d.i:d.i+len(lit.text)]) == lit.text {
			d.i += len(lit.text)
			return lit.v, nil
		}
	}
	return nil, d.fail("unexpected character")
}

func (d *jsonDecoder) object(depth int) (any, error) {
	d.i++ // {
	m := make(map[string]any)
	d.space()
	if d.i < len(d.b) && d.b[d.i] == '}' {
		d.i++
		return m, nil
	}
	for {
		if d.space(); d.i >= len(d.b) || d.b[d.i] != '"' {
			return nil, d.fail("want a key")
		}
		k, err := d.str()
		if err != nil {
			return nil, err
		}
		if d.space(); d.i >= len(d.b) || d.b[d.i] != ':' {
			return nil, d.fail("want ':'")
		}
		d.i++
		v, err := d.value(depth + 1)
		if err != nil {
			return nil, err
		}
		m[k] = v
		if d.space(); d.i < len(d.b) && d.b[d.i] == ',' {
			d.i++
			continue
		}
		if d.i < len(d.b) && d.b[d.i] == '}' {
			d.i++
			return m, nil
		}
		return nil, d.fail("want ',' or '}'")
	}
}

func (d *jsonDecoder) array(depth int) (any, error) {
	d.i++ // [
	l := []any{}
	d.space()
	if d.i < len(d.b) && d.b[d.i] == ']' {
		d.i++
		return l, nil
	}
	for {
		v, err := d.value(depth + 1)
		if err != nil {
			return nil, err
		}
		l = append(l, v)
		if d.space(); d.i < len(d.b) && d.b[d.i] == ',' {
			d.i++
			continue
		}
		if d.i < len(d.b) && d.b[d.i] == ']' {
			d.i++
			return l, nil
		}
		return nil, d.fail("want ',' or ']'")
	}
}

// str reads a string; the plain ones (no escape, valid UTF-8) are one copy.
func (d *jsonDecoder) str() (string, error) {
	d.i++ // "
	start := d.i
	ascii := true
	for ; d.i < len(d.b); d.i++ {
		switch c := d.b[d.i]; {
		case c == '"':
			s := d.b[start:d.i]
			d.i++
			if ascii || utf8.Valid(s) {
				return string(s), nil
			}
			return string(d.unquote(s)), nil
		case c == '\\':
			return d.escaped(start)
		case c < 0x20:
			return "", d.fail("control character in a string")
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return "", d.fail("unterminated string")
}

// escaped reads the rest of a string that holds an escape.
func (d *jsonDecoder) escaped(start int) (string, error) {
	for ; d.i < len(d.b); d.i++ {
		switch c := d.b[d.i]; {
		case c == '"':
			s := d.b[start:d.i]
			d.i++
			return string(d.unquote(s)), nil
		case c == '\\':
			d.i++
			if d.i >= len(d.b) {
				return "", d.fail("unterminated string")
			}
			switch d.b[d.i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if getu4(d.b[d.i-1:]) < 0 {
					return "", d.fail("bad \\u escape")
				}
				d.i += 4
			default:
				return "", d.fail("bad escape")
			}
		case c < 0x20:
			return "", d.fail("control character in a string")
		}
	}
	return "", d.fail("unterminated string")
}

// unquote decodes the escapes of a checked string body and replaces
// invalid UTF-8, as encoding/json does.
func (d *jsonDecoder) unquote(s []byte) []byte {
	out := make([]byte, 0, len(s)+2*utf8.UTFMax)
	for r := 0; r < len(s); {
		c := s[r]
		switch {
		case c == '\\':
			e := s[r+1]
			r += 2
			switch e {
			case 'b':
				out = append(out, '\b')
			case 'f':
				out = append(out, '\f')
			case 'n':
				out = append(out, '\n')
			case 'r':
				out = append(out, '\r')
			case 't':
				out = append(out, '\t')
			case 'u':
				rr := getu4(s[r-2:])
				r += 4
				if utf16.IsSurrogate(rr) {
					if dec := utf16.DecodeRune(rr, getu4(s[r:])); dec != utf8.RuneError {
						r += 6
						out = utf8.AppendRune(out, dec)
						break
					}
					rr = utf8.RuneError
				}
				out = utf8.AppendRune(out, rr)
			default: // " \ /
				out = append(out, e)
			}
		case c < utf8.RuneSelf:
			out = append(out, c)
			r++
		default:
			rr, size := utf8.DecodeRune(s[r:])
			r += size
			out = utf8.AppendRune(out, rr)
		}
	}
	return out
}

// getu4 decodes \uXXXX at the start of s, or returns -1.
func getu4(s []byte) rune {
	if len(s) < 6 || s[0] != '\\' || s[1] != 'u' {
		return -1
	}
	var r rune
	for _, c := range s[2:6] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return -1
		}
		r = r*16 + rune(c)
	}
	return r
}

// number reads a number by JSON's grammar and applies Decode's rule.
func (d *jsonDecoder) number() (any, error) {
	start := d.i
	integral, err := d.scanNumber()
	if err != nil {
		return nil, err
	}
	s := d.b[start:d.i]
	if integral && len(s) < 19 { // fits int64: no need to try the rest
		var v int64
		for _, c := range s[len(s)-len(trimMinus(s)):] {
			v = v*10 + int64(c-'0')
		}
		if s[0] == '-' {
			v = -v
		}
		return v, nil
	}
	return parseNumber(string(s))
}

// scanNumber moves past a number by JSON's grammar and reports whether it
// has neither a fraction nor an exponent.
func (d *jsonDecoder) scanNumber() (integral bool, err error) {
	if d.b[d.i] == '-' {
		d.i++
	}
	if d.i < len(d.b) && d.b[d.i] == '0' {
		d.i++
	} else if d.digits() == 0 {
		return false, d.fail("bad number")
	}
	integral = true
	if d.i < len(d.b) && d.b[d.i] == '.' {
		d.i++
		integral = false
		if d.digits() == 0 {
			return false, d.fail("bad number")
		}
	}
	if d.i < len(d.b) && (d.b[d.i] == 'e' || d.b[d.i] == 'E') {
		d.i++
		integral = false
		if d.i < len(d.b) && (d.b[d.i] == '+' || d.b[d.i] == '-') {
			d.i++
		}
		if d.digits() == 0 {
			return false, d.fail("bad number")
		}
	}
	return integral, nil
}

// digits moves past decimal digits and returns how many there were.
func (d *jsonDecoder) digits() int {
	n := 0
	for d.i < len(d.b) && d.b[d.i] >= '0' && d.b[d.i] <= '9' {
		d.i++
		n++
	}
	return n
}

func trimMinus(s []byte) []byte {
	if len(s) > 0 && s[0] == '-' {
		return s[1:]
	}
	return s
}
