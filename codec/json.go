package codec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"
)

type jsonCodec struct{}

func (jsonCodec) ContentType() string { return JSONType }

// Encode writes v with encoding/json, compact, keys sorted, without HTML
// escaping, after Normalize (a wire struct becomes its Tree); an integral
// float64 keeps a fraction ("1.0") so that it decodes as a float again.
func (jsonCodec) Encode(v any) ([]byte, error) {
	t, _, err := modeJSON.normalize(v, 0)
	if err != nil {
		return nil, fmt.Errorf("codec: encode json: %w", err)
	}
	e := jsonEncoders.Get().(*jsonEncoder)
	e.buf.Reset()
	err = e.enc.Encode(t)
	var out []byte
	if err == nil {
		out = bytes.Clone(e.buf.Bytes()[:e.buf.Len()-1]) // without Encode's newline
	}
	if e.buf.Cap() <= maxPooledBuffer {
		jsonEncoders.Put(e)
	}
	if err != nil {
		return nil, fmt.Errorf("codec: encode json: %w", err)
	}
	return out, nil
}

// maxPooledBuffer bounds the buffer an encoder keeps for the next body.
const maxPooledBuffer = 64 << 10

// jsonEncoder is an encoding/json encoder without HTML escaping and its
// buffer, reused.
type jsonEncoder struct {
	buf bytes.Buffer
	enc *json.Encoder
}

var jsonEncoders = sync.Pool{New: func() any {
	e := &jsonEncoder{}
	e.enc = json.NewEncoder(&e.buf)
	e.enc.SetEscapeHTML(false)
	return e
}}

// jsonFloat is a float64 that encoding/json writes with a fraction when
// it is integral ("1.0"), so that it decodes as a float again.
type jsonFloat float64

// MarshalJSON implements json.Marshaler.
func (f jsonFloat) MarshalJSON() ([]byte, error) {
	b, err := json.Marshal(float64(f))
	if err == nil && !bytes.ContainsAny(b, ".e") {
		b = append(b, '.', '0')
	}
	return b, err
}

// Decode decodes one JSON value. Numbers that are integers fitting int64
// become int64, all others float64.
func (c jsonCodec) Decode(data []byte) (any, error) {
	v, _, err := c.decode(data, MaxDecoded)
	return v, err
}

func (c jsonCodec) decode(data []byte, limit int64) (any, int64, error) {
	cost, err := jsonCost(data, limit) // before anything is allocated
	var v any
	if err == nil {
		v, err = jsonDocument(data)
	}
	if err != nil {
		return nil, cost, decodeErr(c, err)
	}
	return v, cost, nil
}

// jsonOptions make jsontext accept what encoding/json accepts: later
// duplicate keys win (the tree's map keeps the last), and invalid UTF-8
// and lone surrogates become U+FFFD.
var jsonOptions = []jsontext.Options{jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true)}

// jsonText is a jsontext.Decoder over a body's bytes, reused: the
// decoder reads straight from a bytes.Buffer's bytes.
type jsonText struct {
	buf bytes.Buffer
	dec jsontext.Decoder
	r   jsonReader
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
	t.buf, t.r = bytes.Buffer{}, jsonReader{}
	t.dec.Reset(&t.buf)
	jsonTexts.Put(t)
}

// end checks that nothing but white space follows the value.
func (t *jsonText) end() error {
	if _, err := t.dec.ReadToken(); !errors.Is(err, io.EOF) {
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

func trimMinus(s []byte) []byte {
	if len(s) > 0 && s[0] == '-' {
		return s[1:]
	}
	return s
}
