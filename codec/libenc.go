package codec

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"maps"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/mpreg/mpreg/schema"
	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

// Temporary A/B switch between the hand-written encoders and the
// libraries': MPREG_CODEC_LIB=json,msgpack, or SetLibEncoders.
var (
	libJSON    = strings.Contains(os.Getenv("MPREG_CODEC_LIB"), "json")
	libMsgPack = strings.Contains(os.Getenv("MPREG_CODEC_LIB"), "msgpack")
)

// SetLibEncoders switches between the hand-written encoders and the
// libraries' (temporary, for the A/B benchmark; call with no call in flight).
func SetLibEncoders(json, msgpack bool) { libJSON, libMsgPack = json, msgpack }

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

// libMpEncoder writes one body with the library's primitives. It is also
// the schema.FieldWriter of the wire struct being written (fields).
type libMpEncoder struct {
	*msgpack.Encoder
	buf   bytes.Buffer // written to unbuffered
	depth int          // of the wire struct being written
	n     uint32       // its fields so far
	err   error
}

var libMpPool = sync.Pool{New: func() any {
	e := &libMpEncoder{Encoder: msgpack.NewEncoder(nil)}
	e.Reset(&e.buf)
	return e
}}

func encodeMsgpackLib(v any) ([]byte, error) {
	e := libMpPool.Get().(*libMpEncoder)
	defer libMpPool.Put(e)
	e.buf = *bytes.NewBuffer(make([]byte, 0, 256)) // handed to the caller
	e.depth, e.n, e.err = 0, 0, nil
	if err := e.value(v, 0); err != nil {
		return nil, err
	}
	return e.buf.Bytes(), nil
}

func (e *libMpEncoder) value(v any, depth int) error {
	if depth > MaxDepth {
		return errTooDeep
	}
	switch t := v.(type) {
	case nil:
		return e.EncodeNil()
	case bool:
		return e.EncodeBool(t)
	case int64:
		return e.EncodeInt(t)
	case uint64:
		return e.EncodeUint(t)
	case float64:
		return e.EncodeFloat64(t)
	case []byte:
		return e.EncodeBytes(t)
	case string:
		return e.EncodeString(validUTF8(t))
	case []any:
		if t == nil {
			return e.EncodeNil()
		}
		err := e.EncodeArrayLen(len(t))
		for i := 0; i < len(t) && err == nil; i++ {
			err = e.value(t[i], depth+1)
		}
		return err
	case []string:
		if t == nil {
			return e.EncodeNil()
		}
		err := e.EncodeArrayLen(len(t))
		for i := 0; i < len(t) && err == nil; i++ {
			err = e.EncodeString(validUTF8(t[i]))
		}
		return err
	case map[string]any:
		return e.object(t, depth)
	case schema.Wire:
		if schema.IsNil(t) {
			return e.EncodeNil()
		}
		return e.fields(t, depth)
	}
	return e.other(v, depth)
}

// other writes a value outside the model: a slice of wire structs in
// place (not boxed one by one), anything else normalized.
func (e *libMpEncoder) other(v any, depth int) error {
	if rv := reflect.ValueOf(v); rv.Kind() == reflect.Slice && !rv.IsNil() && rv.Type().Elem().Kind() != reflect.Pointer && rv.Type().Elem().Implements(wireType) {
		err := e.EncodeArrayLen(rv.Len())
		for i := 0; i < rv.Len() && err == nil; i++ {
			err = e.fields(rv.Index(i).Addr().Interface().(schema.Wire), depth+1)
		}
		return err
	}
	n, _, err := modeModel.normalize(v, depth)
	if err != nil {
		return err
	}
	return e.value(n, depth)
}

// fields writes a wire struct as a map, with no map built: a map32 header
// (any decoder takes it for any count) whose count is set afterwards.
func (e *libMpEncoder) fields(x schema.Wire, depth int) error {
	at := e.buf.Len()
	e.buf.Write([]byte{msgpcode.Map32, 0, 0, 0, 0})
	outer, outerN := e.depth, e.n
	e.depth, e.n = depth, 0
	x.WriteFields(e)
	binary.BigEndian.PutUint32(e.buf.Bytes()[at+1:], e.n)
	e.depth, e.n = outer, outerN
	return e.err
}

func (e *libMpEncoder) Str(k, v string) {
	if e.key(k) {
		e.err = e.EncodeString(validUTF8(v))
	}
}

func (e *libMpEncoder) Int(k string, v int64) {
	if e.key(k) {
		e.err = e.EncodeInt(v)
	}
}

func (e *libMpEncoder) Any(k string, v any) {
	if e.key(k) {
		e.err = e.value(v, e.depth+1)
	}
}

func (e *libMpEncoder) key(k string) bool {
	if e.err == nil {
		e.n++
		e.err = e.EncodeString(k)
	}
	return e.err == nil
}

// object writes a map. Keys that are not UTF-8 are repaired in key order,
// as JSON encoders write them.
func (e *libMpEncoder) object(m map[string]any, depth int) error {
	if m == nil {
		return e.EncodeNil()
	}
	for k := range m {
		if !utf8.ValidString(k) {
			fixed := make(map[string]any, len(m))
			for _, k := range slices.Sorted(maps.Keys(m)) {
				fixed[validUTF8(k)] = m[k]
			}
			m = fixed
			break
		}
	}
	err := e.EncodeMapLen(len(m))
	for k, v := range m {
		if err == nil {
			err = e.EncodeString(k)
		}
		if err == nil {
			err = e.value(v, depth+1)
		}
	}
	return err
}
