package codec

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math"
	"reflect"
	"slices"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/mpreg/mpreg/schema"
	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

type msgpackCodec struct{}

func (msgpackCodec) ContentType() string { return MsgPackType }

// Encode encodes v as MessagePack with the library's encoder (compact
// integers, float64 as double, []byte as bin, each byte of a string that is
// not UTF-8 as U+FFFD as in JSON). Wire structs are written from their
// fields, without a map; values outside the model go through Normalize.
func (msgpackCodec) Encode(v any) ([]byte, error) {
	e := mpEncoders.Get().(*mpEncoder)
	defer mpEncoders.Put(e)
	e.buf = *bytes.NewBuffer(make([]byte, 0, 256)) // handed to the caller
	e.depth, e.n, e.err = 0, 0, nil
	if err := e.value(v, 0); err != nil {
		return nil, fmt.Errorf("codec: encode msgpack: %w", err)
	}
	return e.buf.Bytes(), nil
}

// mpEncoder writes one body through the library's encoder. It is also the
// schema.FieldWriter of the wire struct being written (fields).
type mpEncoder struct {
	*msgpack.Encoder
	buf   bytes.Buffer // written to unbuffered
	depth int          // of the wire struct being written
	n     uint32       // its fields so far
	err   error
}

var mpEncoders = sync.Pool{New: func() any {
	e := &mpEncoder{Encoder: msgpack.NewEncoder(nil)}
	e.Reset(&e.buf)
	return e
}}

func (e *mpEncoder) value(v any, depth int) error {
	if depth > MaxDepth {
		return errTooDeep
	}
	switch t := v.(type) {
	case nil:
		return e.EncodeNil()
	case bool:
		return e.EncodeBool(t)
	case int64:
		return e.EncodeInt(t) // compact
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
func (e *mpEncoder) other(v any, depth int) error {
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

var wireType = reflect.TypeFor[schema.Wire]()

// fields writes a wire struct as a map, with no map built: a map32 header
// (any decoder takes it for any count) whose count is set afterwards.
func (e *mpEncoder) fields(x schema.Wire, depth int) error {
	at := e.buf.Len()
	e.buf.Write([]byte{msgpcode.Map32, 0, 0, 0, 0})
	outer, outerN := e.depth, e.n
	e.depth, e.n = depth, 0
	x.WriteFields(e)
	binary.BigEndian.PutUint32(e.buf.Bytes()[at+1:], e.n)
	e.depth, e.n = outer, outerN
	return e.err
}

func (e *mpEncoder) Str(k, v string) {
	if e.key(k) {
		e.err = e.EncodeString(validUTF8(v))
	}
}

func (e *mpEncoder) Int(k string, v int64) {
	if e.key(k) {
		e.err = e.EncodeInt(v)
	}
}

func (e *mpEncoder) Any(k string, v any) {
	if e.key(k) {
		e.err = e.value(v, e.depth+1)
	}
}

func (e *mpEncoder) key(k string) bool {
	if e.err == nil {
		e.n++
		e.err = e.EncodeString(k)
	}
	return e.err == nil
}

// object writes a map. Keys that are not UTF-8 are repaired in key order,
// as JSON encoders write them: two that differ only in bad bytes become
// one, the last in order winning as on a JSON decoder.
func (e *mpEncoder) object(m map[string]any, depth int) error {
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

// Decode decodes one MessagePack value into the value model.
func (c msgpackCodec) Decode(data []byte) (any, error) {
	v, _, err := c.decode(data, MaxDecoded)
	return v, err
}

func (c msgpackCodec) decode(data []byte, limit int64) (any, int64, error) {
	m := &mpDecoder{b: data, cost: budget{max: limit}}
	v, err := m.decode(0)
	if err != nil {
		return nil, m.cost.used, decodeErr(c, err)
	}
	if left := len(m.b) - m.i; left != 0 {
		return nil, m.cost.used, decodeErr(c, fmt.Errorf("%d bytes of trailing data after the value", left))
	}
	return v, m.cost.used, nil
}

// mpDecoder walks one MessagePack value in a byte slice, checking every
// length it reads against the bytes left before anything is allocated.
type mpDecoder struct {
	b    []byte
	i    int
	cost budget // charged before each allocation
}

var errShort = errors.New("unexpected end of data")

// next reads n bytes.
func (m *mpDecoder) next(n int) ([]byte, error) {
	if n < 0 || n > len(m.b)-m.i {
		return nil, errShort
	}
	b := m.b[m.i : m.i+n : m.i+n]
	m.i += n
	return b, nil
}

// length reads the length of a 8-, 16- or 32-bit form.
func (m *mpDecoder) length(size int) (int, error) {
	b, err := m.next(size)
	if err != nil {
		return 0, err
	}
	switch size {
	case 1:
		return int(b[0]), nil
	case 2:
		return int(binary.BigEndian.Uint16(b)), nil
	}
	return int(binary.BigEndian.Uint32(b)), nil
}

// raw reads the body of a str or bin whose code was just read, without
// copying it.
func (m *mpDecoder) raw(c byte) ([]byte, error) {
	var n int
	var err error
	switch {
	case c >= msgpcode.FixedStrLow && c <= msgpcode.FixedStrHigh:
		n = int(c & msgpcode.FixedStrMask)
	case c == msgpcode.Str8 || c == msgpcode.Bin8:
		n, err = m.length(1)
	case c == msgpcode.Str16 || c == msgpcode.Bin16:
		n, err = m.length(2)
	default:
		n, err = m.length(4)
	}
	if err != nil {
		return nil, err
	}
	if n > len(m.b)-m.i {
		return nil, fmt.Errorf("string or binary of %d bytes in %d bytes", n, len(m.b)-m.i)
	}
	return m.next(n)
}

func isStr(c byte) bool {
	return c >= msgpcode.FixedStrLow && c <= msgpcode.FixedStrHigh || c == msgpcode.Str8 || c == msgpcode.Str16 || c == msgpcode.Str32
}

func isBin(c byte) bool { return c == msgpcode.Bin8 || c == msgpcode.Bin16 || c == msgpcode.Bin32 }

// errNotUTF8 rejects a str that is not UTF-8, as MessagePack requires.
var errNotUTF8 = errors.New("string is not valid UTF-8; send raw bytes as bin")

// key decodes a map key: a str or bin as a string, an integer in decimal;
// anything else is an error.
func (m *mpDecoder) key(depth int) (string, error) {
	if m.i >= len(m.b) {
		return "", errShort
	}
	if c := m.b[m.i]; isStr(c) || isBin(c) {
		m.i++
		return m.str(c)
	}
	kv, err := m.decode(depth)
	if err != nil {
		return "", err
	}
	switch kt := kv.(type) {
	case int64, uint64:
		return fmt.Sprint(kt), nil
	}
	return "", fmt.Errorf("map key of type %T; keys must be strings", kv)
}

func (m *mpDecoder) decode(depth int) (any, error) {
	if depth > MaxDepth {
		return nil, errTooDeep
	}
	if m.i >= len(m.b) {
		return nil, errShort
	}
	c := m.b[m.i]
	m.i++
	switch {
	case c <= msgpcode.PosFixedNumHigh:
		return m.number(int64(c))
	case c >= msgpcode.NegFixedNumLow:
		return m.number(int64(int8(c)))
	case c >= msgpcode.FixedMapLow && c <= msgpcode.FixedMapHigh:
		return m.object(int(c&msgpcode.FixedMapMask), depth)
	case c >= msgpcode.FixedArrayLow && c <= msgpcode.FixedArrayHigh:
		return m.array(int(c&msgpcode.FixedArrayMask), depth)
	case isStr(c):
		return m.str(c)
	case isBin(c):
		return m.binary(c)
	}
	return m.coded(c, depth)
}

// binary reads a bin value after its code c.
func (m *mpDecoder) binary(c byte) (any, error) {
	b, err := m.raw(c)
	if err == nil {
		err = m.cost.charge(costBinary + int64(len(b)))
	}
	if err != nil {
		return nil, err
	}
	return slices.Clone(b), nil
}

// coded reads a value whose code c is its type alone, not a fix type:
// nil, booleans, 16- and 32-bit arrays and maps, timestamps and
// fixed-size numbers.
func (m *mpDecoder) coded(c byte, depth int) (any, error) {
	switch c {
	case msgpcode.Nil:
		return nil, nil
	case msgpcode.False:
		return false, nil
	case msgpcode.True:
		return true, nil
	case msgpcode.Array16, msgpcode.Array32, msgpcode.Map16, msgpcode.Map32:
		size := 2
		if c == msgpcode.Array32 || c == msgpcode.Map32 {
			size = 4
		}
		n, err := m.length(size)
		if err != nil {
			return nil, err
		}
		if c == msgpcode.Array16 || c == msgpcode.Array32 {
			return m.array(n, depth)
		}
		return m.object(n, depth)
	case msgpcode.FixExt4, msgpcode.FixExt8, msgpcode.Ext8:
		return m.timestamp(c)
	}
	return m.fixedNumber(c)
}

// fixedNumber reads a number of a fixed size after its code.
func (m *mpDecoder) fixedNumber(c byte) (any, error) {
	var size int
	switch c {
	case msgpcode.Uint8, msgpcode.Int8:
		size = 1
	case msgpcode.Uint16, msgpcode.Int16:
		size = 2
	case msgpcode.Uint32, msgpcode.Int32, msgpcode.Float:
		size = 4
	case msgpcode.Uint64, msgpcode.Int64, msgpcode.Double:
		size = 8
	default:
		return nil, fmt.Errorf("unknown MessagePack code 0x%02x", c)
	}
	if err := m.cost.charge(costNumber); err != nil {
		return nil, err
	}
	b, err := m.next(size)
	if err != nil {
		return nil, err
	}
	switch c {
	case msgpcode.Uint8:
		return int64(b[0]), nil
	case msgpcode.Int8:
		return int64(int8(b[0])), nil
	case msgpcode.Uint16:
		return int64(binary.BigEndian.Uint16(b)), nil
	case msgpcode.Int16:
		return int64(int16(binary.BigEndian.Uint16(b))), nil
	case msgpcode.Uint32:
		return int64(binary.BigEndian.Uint32(b)), nil
	case msgpcode.Int32:
		return int64(int32(binary.BigEndian.Uint32(b))), nil
	case msgpcode.Float:
		return float64(math.Float32frombits(binary.BigEndian.Uint32(b))), nil
	case msgpcode.Uint64:
		return fromUint(binary.BigEndian.Uint64(b)), nil
	case msgpcode.Int64:
		return int64(binary.BigEndian.Uint64(b)), nil
	}
	return math.Float64frombits(binary.BigEndian.Uint64(b)), nil
}

func (m *mpDecoder) number(v int64) (any, error) {
	if err := m.cost.charge(costNumber); err != nil {
		return nil, err
	}
	return v, nil
}

// timestamp reads the timestamp extension (type -1 in fixext 4, fixext 8
// or ext 8 of 12 bytes) as RFC 3339 text; other extensions are refused
// before anything is read.
func (m *mpDecoder) timestamp(c byte) (any, error) {
	start := m.i - 1
	size := 1 + 4 // type and body
	switch {
	case c == msgpcode.FixExt8:
		size = 1 + 8
	case c == msgpcode.Ext8 && (m.i >= len(m.b) || m.b[m.i] != 12):
		return nil, fmt.Errorf("ext 0x%02x is not a timestamp", c)
	case c == msgpcode.Ext8:
		size = 2 + 12 // length, type and body
	}
	if _, err := m.next(size); err != nil {
		return nil, err
	}
	var tm time.Time
	if err := msgpack.Unmarshal(m.b[start:m.i], &tm); err != nil {
		return nil, err
	}
	return tm.UTC().Format(time.RFC3339Nano), nil
}

func (m *mpDecoder) array(n, depth int) (any, error) {
	if n > len(m.b)-m.i { // every element takes at least one byte
		return nil, fmt.Errorf("array of %d elements in %d bytes", n, len(m.b)-m.i)
	}
	if err := m.cost.charge(costArray + costSlot*int64(n)); err != nil {
		return nil, err
	}
	out := make([]any, n)
	for i := range out {
		var err error
		if out[i], err = m.decode(depth + 1); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (m *mpDecoder) object(n, depth int) (any, error) {
	if 2*n > len(m.b)-m.i {
		return nil, fmt.Errorf("map of %d entries in %d bytes", n, len(m.b)-m.i)
	}
	if err := m.cost.charge(mapCost(n)); err != nil {
		return nil, err
	}
	out := make(map[string]any, n)
	for i := 0; i < n; i++ {
		k, err := m.key(depth + 1)
		if err != nil {
			return nil, err
		}
		if out[k], err = m.decode(depth + 1); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// str reads a str or bin whose code c was just read as a string, checked
// to be UTF-8 (a protocol key without allocating).
func (m *mpDecoder) str(c byte) (string, error) {
	b, err := m.raw(c)
	switch {
	case err != nil:
		return "", err
	case !utf8.Valid(b):
		return "", errNotUTF8
	}
	if err := m.cost.charge(costString + int64(len(b))); err != nil {
		return "", err
	}
	return schema.Intern(b), nil
}
