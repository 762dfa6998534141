package codec

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"sync"
)

// Temporary A/B switch between the hand-written encoders and the
// libraries': MPREG_CODEC_LIB=json,msgpack, or SetLibEncoders.
var libJSON = strings.Contains(os.Getenv("MPREG_CODEC_LIB"), "json")

// SetLibEncoders switches between the hand-written encoders and the
// libraries' (temporary, for the A/B benchmark; call with no call in flight).
func SetLibEncoders(json, _ bool) { libJSON = json }

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

// libJSONEnc is a pooled encoding/json encoder and its buffer.
type libJSONEnc struct {
	buf bytes.Buffer
	enc *json.Encoder
}

var libJSONPool = sync.Pool{New: func() any {
	e := &libJSONEnc{}
	e.enc = json.NewEncoder(&e.buf)
	e.enc.SetEscapeHTML(false)
	return e
}}

// encodeJSONLib writes v with encoding/json after Normalize (wire structs
// become their Tree, float64 a jsonFloat).
func encodeJSONLib(v any) ([]byte, error) {
	t, _, err := modeJSON.normalize(v, 0)
	if err != nil {
		return nil, err
	}
	e := libJSONPool.Get().(*libJSONEnc)
	defer libJSONPool.Put(e)
	e.buf.Reset()
	if err := e.enc.Encode(t); err != nil {
		return nil, err
	}
	return bytes.Clone(e.buf.Bytes()[:e.buf.Len()-1]), nil // without Encode's newline
}
