package codec

import (
	"bytes"
	"errors"
	"io"
	"sync"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/mpreg/mpreg/schema"
)

// jsonOptions make jsontext accept what encoding/json accepts: later
// duplicate keys win (the tree's map keeps the last), and invalid UTF-8
// and lone surrogates become U+FFFD.
var jsonOptions = []jsontext.Options{jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true)}

// jsonText is a jsontext.Decoder over a body's bytes, reused: the
// decoder reads straight from a bytes.Buffer's bytes.
type jsonText struct {
	buf bytes.Buffer
	dec jsontext.Decoder
	r   jsonTextReader
}

var jsonTexts = sync.Pool{New: func() any { return new(jsonText) }}

// newJSONText returns a pooled decoder over data; release it with put.
func newJSONText(data []byte) *jsonText {
	t := jsonTexts.Get().(*jsonText)
	t.buf = *bytes.NewBuffer(data)
	t.dec.Reset(&t.buf, jsonOptions...)
	return t
}

func (t *jsonText) put() {
	t.buf, t.r = bytes.Buffer{}, jsonTextReader{}
	t.dec.Reset(&t.buf)
	jsonTexts.Put(t)
}

// end checks that nothing but white space follows the value.
func (t *jsonText) end() error {
	if _, err := t.dec.ReadToken(); err != io.EOF {
		return errors.New("trailing data after the value")
	}
	return nil
}

// jsonDocument reads one JSON text into the value tree, as encoding/json
// with UseNumber followed by the number rule of Decode would (fuzzed
// against it): integers that fit int64 (else uint64) become that, other
// numbers float64; later duplicate keys win; invalid UTF-8 and lone
// surrogates become U+FFFD; nesting deeper than MaxDepth fails.
func jsonDocument(data []byte) (any, error) {
	t := newJSONText(data)
	defer t.put()
	v, err := jsonValue(&t.dec, 0)
	if err == nil {
		err = t.end()
	}
	if err != nil {
		return nil, err
	}
	return v, nil
}

// jsonValue reads the next value, at depth, into the value tree.
func jsonValue(d *jsontext.Decoder, depth int) (any, error) {
	if depth > MaxDepth {
		return nil, errTooDeep
	}
	switch d.PeekKind() {
	case '{':
		return jsonObject(d, depth)
	case '[':
		return jsonArray(d, depth)
	}
	raw, err := d.ReadValue()
	if err != nil {
		return nil, err
	}
	switch raw[0] {
	case '"':
		return jsonString(raw), nil
	case 'n':
		return nil, nil
	case 't':
		return true, nil
	case 'f':
		return false, nil
	}
	return jsonNumber(raw)
}

func jsonObject(d *jsontext.Decoder, depth int) (any, error) {
	if _, err := d.ReadToken(); err != nil {
		return nil, err
	}
	m := make(map[string]any)
	for d.PeekKind() != '}' {
		raw, err := d.ReadValue() // the key, or the error PeekKind saw
		if err != nil {
			return nil, err
		}
		k := jsonString(raw)
		if m[k], err = jsonValue(d, depth+1); err != nil {
			return nil, err
		}
	}
	_, err := d.ReadToken()
	return m, err
}

func jsonArray(d *jsontext.Decoder, depth int) (any, error) {
	if _, err := d.ReadToken(); err != nil {
		return nil, err
	}
	l := []any{}
	for d.PeekKind() != ']' {
		v, err := jsonValue(d, depth+1)
		if err != nil {
			return nil, err
		}
		l = append(l, v)
	}
	_, err := d.ReadToken()
	return l, err
}

// jsonString is the string of a raw JSON string: the plain ones (no
// escape, valid UTF-8) are one copy.
func jsonString(raw jsontext.Value) string {
	s := raw[1 : len(raw)-1]
	if bytes.IndexByte(s, '\\') < 0 && utf8.Valid(s) {
		return string(s)
	}
	b, _ := jsontext.AppendUnquote(nil, raw) // invalid UTF-8 became U+FFFD
	return string(b)
}

// jsonNumber applies Decode's number rule to a raw JSON number.
func jsonNumber(s []byte) (any, error) {
	if v, ok := smallInt(s); ok {
		return v, nil
	}
	return parseNumber(string(s))
}

// smallInt parses an integer of fewer than 19 characters, which fits
// int64 and needs no more checks.
func smallInt(s []byte) (int64, bool) {
	if len(s) >= 19 || bytes.ContainsAny(s, ".eE") {
		return 0, false
	}
	var v int64
	for _, c := range trimMinus(s) {
		v = v*10 + int64(c-'0')
	}
	if s[0] == '-' {
		v = -v
	}
	return v, true
}

// jsonTextReader is the schema.Reader over JSON bytes, on jsontext: its
// values, strings and numbers are the ones jsonValue makes, so a wire
// struct read here is the one read from the tree.
type jsonTextReader struct {
	t     *jsonText
	depth int   // of the next value
	cost  int64 // jsonCost of the whole text, counted before reading
	err   error
}

var _ schema.Reader = (*jsonTextReader)(nil)

func (j *jsonTextReader) fail(err error) {
	if j.err == nil {
		j.err = err
	}
}

// failed keeps the error the decoder holds after PeekKind reported none.
func (j *jsonTextReader) failed() {
	_, err := j.t.dec.ReadToken()
	if err == nil {
		err = errors.New("unexpected end of a map or list")
	}
	j.fail(err)
}

func (j *jsonTextReader) Err() error { return j.err }

// finish reports the first error, or what follows the value.
func (j *jsonTextReader) finish() error {
	if j.err != nil {
		return j.err
	}
	return j.t.end()
}

func (j *jsonTextReader) used() int64 { return j.cost }

func (j *jsonTextReader) Next() schema.Kind {
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
func (j *jsonTextReader) open() int {
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

func (j *jsonTextReader) Map() int {
	if j.Next() != schema.KindMap {
		return 0
	}
	return j.open()
}

func (j *jsonTextReader) List() int {
	if j.Next() != schema.KindList {
		return 0
	}
	return j.open()
}

// more moves to the next element of the innermost open container, whose
// closing kind is end, or past its end (false).
func (j *jsonTextReader) more(end jsontext.Kind) bool {
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

func (j *jsonTextReader) More() bool { return j.more(']') }

func (j *jsonTextReader) Key() (string, bool) {
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

func (j *jsonTextReader) Str() string {
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

func (j *jsonTextReader) Int() (int64, bool) {
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

func (j *jsonTextReader) Bool() bool {
	b, _ := j.Value().(bool)
	return b
}

func (j *jsonTextReader) Value() any {
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

func (j *jsonTextReader) Skip() { j.Value() }
