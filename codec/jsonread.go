package codec

import (
	"errors"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/mpreg/mpreg/schema"
)

// jsonReader is the schema.Reader over JSON bytes, on jsontext: its
// values, strings and numbers are the ones jsonValue makes, so a wire
// struct read here is the one read from the tree.
type jsonReader struct {
	t     *jsonText
	depth int   // of the next value
	cost  int64 // jsonCost of the whole text, counted before reading
	err   error
}

var _ schema.Reader = (*jsonReader)(nil)

func (j *jsonReader) fail(err error) {
	if j.err == nil {
		j.err = err
	}
}

// failed keeps the error the decoder holds after PeekKind reported none.
func (j *jsonReader) failed() {
	_, err := j.t.dec.ReadToken()
	if err == nil {
		err = errors.New("unexpected end of a map or list")
	}
	j.fail(err)
}

func (j *jsonReader) Err() error { return j.err }

// finish reports the first error, or what follows the value.
func (j *jsonReader) finish() error {
	if j.err != nil {
		return j.err
	}
	return j.t.end()
}

func (j *jsonReader) used() int64 { return j.cost }

func (j *jsonReader) Next() schema.Kind {
	if j.err != nil {
		return ""
	}
	switch j.t.dec.PeekKind() {
	case '{':
		return schema.KindMap
	case '[':
		return schema.KindList
	case '"':
		return schema.KindString
	case '0':
		return schema.KindNumber
	case 't', 'f':
		return schema.KindBool
	case 'n':
		return schema.KindNull
	}
	j.failed()
	return ""
}

// open opens a map or list (its first byte is next).
func (j *jsonReader) open() int {
	if j.depth > MaxDepth || j.depth >= maxOpen {
		j.fail(errTooDeep)
		return 0
	}
	if _, err := j.t.dec.ReadToken(); err != nil {
		j.fail(err)
		return 0
	}
	j.depth++
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
// closing kind is end, or past its end (false).
func (j *jsonReader) more(end jsontext.Kind) bool {
	if j.err != nil {
		return false
	}
	switch j.t.dec.PeekKind() {
	case end:
		if _, err := j.t.dec.ReadToken(); err != nil {
			j.fail(err)
		}
		j.depth--
		return false
	case 0:
		j.failed()
		return false
	}
	return true
}

func (j *jsonReader) More() bool { return j.more(']') }

func (j *jsonReader) Key() (string, bool) {
	if !j.more('}') {
		return "", false
	}
	raw, err := j.t.dec.ReadValue()
	if err != nil {
		j.fail(err)
		return "", false
	}
	return jsonKey(raw), true
}

// jsonKey is the string of a raw key: a plain one (ASCII, no escape) is
// not copied when it is one of the protocol's.
func jsonKey(raw jsontext.Value) string {
	s := raw[1 : len(raw)-1]
	for _, c := range s {
		if c >= utf8.RuneSelf || c == '\\' {
			return jsonString(raw)
		}
	}
	return schema.Intern(s)
}

func (j *jsonReader) Str() string {
	if j.Next() != schema.KindString {
		return ""
	}
	raw, err := j.t.dec.ReadValue()
	if err != nil {
		j.fail(err)
		return ""
	}
	return jsonString(raw)
}

func (j *jsonReader) Int() (int64, bool) {
	if j.Next() != schema.KindNumber {
		return 0, false
	}
	raw, err := j.t.dec.ReadValue()
	if err != nil {
		j.fail(err)
		return 0, false
	}
	if v, ok := smallInt(raw); ok {
		return v, true
	}
	v, err := parseNumber(string(raw))
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
	v, err := jsonValue(&j.t.dec, j.depth)
	if err != nil {
		j.fail(err)
		return nil
	}
	return v
}

func (j *jsonReader) Skip() { j.Value() }
