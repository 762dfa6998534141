package codec

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sync"
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
	if err == nil && jsonLib {
		v, err = jsonDocument(data)
	} else if err == nil {
		d := jsonDecoder{b: data}
		v, err = d.document()
	}
	if err != nil {
		return nil, cost, decodeErr(c, err)
	}
	return v, cost, nil
}
