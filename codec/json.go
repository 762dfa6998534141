package codec

import (
	"fmt"
)

type jsonCodec struct{}

func (jsonCodec) ContentType() string { return JSONType }

// Encode writes v as compact JSON, keys sorted, without HTML escaping,
// after Normalize, as encoding/json would; an integral float64 keeps a
// fraction ("1.0") so that it decodes as a float again.
func (jsonCodec) Encode(v any) ([]byte, error) {
	if libJSON {
		b, err := encodeJSONLib(v)
		if err != nil {
			return nil, fmt.Errorf("codec: encode json: %w", err)
		}
		return b, nil
	}
	e := jsonEncoder{b: make([]byte, 0, 256)}
	if err := e.value(v, 0); err != nil {
		return nil, fmt.Errorf("codec: encode json: %w", err)
	}
	return e.b, nil
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
		d := jsonDecoder{b: data}
		v, err = d.document()
	}
	if err != nil {
		return nil, cost, decodeErr(c, err)
	}
	return v, cost, nil
}
