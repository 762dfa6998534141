package codec

import (
	"errors"

	"github.com/mpreg/mpreg/schema"
)

// jsonReader is the schema.Reader over JSON bytes. It reads with the
// one-pass decoder's pieces (jsondec.go): its values, strings and numbers
// are the ones that decoder makes, so a wire struct read here is the one
// read from the decoder's tree. This file is all the reader takes from it.
type jsonReader struct {
	d     jsonDecoder
	depth int    // of the next value
	first uint64 // bit d: the container open at depth d has no element yet
	cost  int64  // jsonCost of the whole text, counted before reading
	err   error
}

var _ schema.Reader = (*jsonReader)(nil)

func (j *jsonReader) fail(err error) {
	if j.err == nil {
		j.err = err
	}
}

func (j *jsonReader) Err() error { return j.err }

// finish reports the first error, or what follows the value.
func (j *jsonReader) finish() error {
	if j.err != nil {
		return j.err
	}
	if j.d.space(); j.d.i != len(j.d.b) {
		return errors.New("trailing data after the value")
	}
	return nil
}

func (j *jsonReader) used() int64 { return j.cost }

func (j *jsonReader) Next() schema.Kind {
	d := &j.d
	if j.err != nil {
		return ""
	}
	if d.space(); d.i >= len(d.b) {
		j.fail(d.fail("unexpected end"))
		return ""
	}
	switch c := d.b[d.i]; {
	case c == '{':
		return schema.KindMap
	case c == '[':
		return schema.KindList
	case c == '"':
		return schema.KindString
	case c == '-' || c >= '0' && c <= '9':
		return schema.KindNumber
	case c == 't' || c == 'f':
		return schema.KindBool
	case c == 'n':
		return schema.KindNull
	}
	j.fail(d.fail("unexpected character"))
	return ""
}

// open opens a map or list (its first byte is next).
func (j *jsonReader) open() int {
	if j.depth > MaxDepth || j.depth >= maxOpen {
		j.fail(errTooDeep)
		return 0
	}
	j.d.i++
	j.depth++
	j.first |= 1 << j.depth
	return -1
}

func (j *jsonReader) Map() int {
	if j.Next() != schema.KindMap {
		return 0
	}
	return j.open()
}

func (j *jsonReader) List() int {
	if j.Next() != schema.KindList {
		return 0
	}
	return j.open()
}

// more moves to the next element of the innermost open container, whose
// closing byte is end, or past its end (false).
func (j *jsonReader) more(end byte) bool {
	d := &j.d
	if j.err != nil {
		return false
	}
	d.space()
	bit := uint64(1) << j.depth
	switch {
	case d.i < len(d.b) && d.b[d.i] == end:
		d.i++
		j.depth--
		return false
	case j.first&bit != 0:
		j.first &^= bit
	case d.i < len(d.b) && d.b[d.i] == ',':
		d.i++
	default:
		j.fail(d.fail("want ',' or '" + string(end) + "'"))
		return false
	}
	return true
}

func (j *jsonReader) More() bool { return j.more(']') }

func (j *jsonReader) Key() (string, bool) {
	if !j.more('}') {
		return "", false
	}
	d := &j.d
	if d.space(); d.i >= len(d.b) || d.b[d.i] != '"' {
		j.fail(d.fail("want a key"))
		return "", false
	}
	k, err := j.key()
	if err != nil {
		j.fail(err)
		return "", false
	}
	if d.space(); d.i >= len(d.b) || d.b[d.i] != ':' {
		j.fail(d.fail("want ':'"))
		return "", false
	}
	d.i++
	return k, true
}

// key reads a key: a plain one (printable ASCII, no escape) without a copy
// when it is one of the protocol's.
func (j *jsonReader) key() (string, error) {
	d := &j.d
	for e := d.i + 1; e < len(d.b); e++ {
		switch c := d.b[e]; {
		case c == '"':
			k := schema.Intern(d.b[d.i+1 : e])
			d.i = e + 1
			return k, nil
		case c < 0x20 || c >= 0x7f || c == '\\':
			return d.str()
		}
	}
	return d.str()
}

func (j *jsonReader) Str() string {
	if j.Next() != schema.KindString {
		return ""
	}
	s, err := j.d.str()
	if err != nil {
		j.fail(err)
	}
	return s
}

func (j *jsonReader) Int() (int64, bool) {
	if j.Next() != schema.KindNumber {
		return 0, false
	}
	d := &j.d
	start := d.i
	integral, err := d.scanNumber()
	if err != nil {
		j.fail(err)
		return 0, false
	}
	s := d.b[start:d.i]
	if integral && len(s) < 19 { // as jsonDecoder.number
		var v int64
		for _, c := range trimMinus(s) {
			v = v*10 + int64(c-'0')
		}
		if s[0] == '-' {
			v = -v
		}
		return v, true
	}
	v, err := parseNumber(string(s))
	if err != nil {
		j.fail(err)
		return 0, false
	}
	return schema.IntOf(v)
}

func (j *jsonReader) Bool() bool {
	b, _ := j.Value().(bool)
	return b
}

func (j *jsonReader) Value() any {
	if j.err != nil {
		return nil
	}
	v, err := j.d.value(j.depth)
	if err != nil {
		j.fail(err)
		return nil
	}
	return v
}

func (j *jsonReader) Skip() { j.Value() }
