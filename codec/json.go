package codec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

type jsonCodec struct{}

func (jsonCodec) ContentType() string { return JSONType }

// Encode encodes v as compact JSON without HTML escaping, with
// encoding/json. Map keys are sorted. A float64 with an integral value
// keeps a fraction ("1.0") so that it decodes as a float64 again; []byte
// becomes a base64 string. Values outside the model go through Normalize.
func (jsonCodec) Encode(v any) ([]byte, error) {
	t, _, err := modeJSON.normalize(v, 0)
	if err != nil {
		return nil, fmt.Errorf("codec: encode json: %w", err)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(t); err != nil {
		return nil, fmt.Errorf("codec: encode json: %w", err)
	}
	return buf.Bytes()[:buf.Len()-1], nil // without Encode's newline
}

// Decode decodes one JSON value. Numbers that are integers fitting int64
// become int64, all others float64.
func (c jsonCodec) Decode(data []byte) (any, error) {
	v, _, err := c.decode(data, MaxDecoded)
	return v, err
}

func (c jsonCodec) decode(data []byte, limit int64) (any, int64, error) {
	cost, err := jsonCost(data, limit) // before encoding/json allocates
	var v any
	if err == nil {
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		if err = dec.Decode(&v); err == nil {
			if _, tail := dec.Token(); tail != io.EOF {
				err = errors.New("trailing data after the value")
			}
		}
	}
	if err == nil {
		v, err = fromJSON(v, 0)
	}
	if err != nil {
		return nil, cost, decodeErr(c, err)
	}
	return v, cost, nil
}

func fromJSON(v any, depth int) (any, error) {
	if depth > MaxDepth {
		return nil, errTooDeep
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
