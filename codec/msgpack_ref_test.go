package codec

// The references the MessagePack codec is held to: the library's reflective
// encoder, and the decoder as it was written on the library's reader.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/mpreg/mpreg/schema"
	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

// refMsgpackEncode is the reference the encoder is held to: the library's
// reflective Encode (compact integers) of the tree normalized, its strings
// and keys made UTF-8 as the codec makes them.
func refMsgpackEncode(v any) ([]byte, error) {
	t, err := Normalize(v)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.UseCompactInts(true)
	if err := enc.Encode(refUTF8(t)); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// refUTF8 copies a normalized tree with each string and key made UTF-8;
// keys that collide then keep the value of the last in sorted order.
func refUTF8(v any) any {
	switch t := v.(type) {
	case string:
		return validUTF8(t)
	case []any:
		out := make([]any, len(t))
		for i, x := range t {
			out[i] = refUTF8(x)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(t))
		for _, k := range slices.Sorted(maps.Keys(t)) {
			out[validUTF8(k)] = refUTF8(t[k])
		}
		return out
	}
	return v
}

// Decode decodes one MessagePack value into the value model.

func refMsgpackDecode(data []byte, limit int64) (any, int64, error) {
	r := bytes.NewReader(data)
	dec := msgpack.GetDecoder()
	defer msgpack.PutDecoder(dec)
	dec.Reset(r)
	m := &refMpDecoder{d: dec, r: r, data: data, cost: budget{max: limit}}
	v, err := m.decode(0)
	if err != nil {
		return nil, m.cost.used, decodeErr(MsgPack, err)
	}
	if r.Len() != 0 {
		return nil, m.cost.used, decodeErr(MsgPack, fmt.Errorf("%d bytes of trailing data after the value", r.Len()))
	}
	return v, m.cost.used, nil
}

// refMpDecoder walks one MessagePack value, checking every length it reads
// against the bytes left (r.Len(): the decoder reads r unbuffered) before
// anything is allocated.
type refMpDecoder struct {
	d    *msgpack.Decoder
	r    *bytes.Reader
	data []byte
	cost budget // charged before each allocation
}

// raw reads a str or bin header and returns the bytes that follow, without
// copying them.
func (m *refMpDecoder) raw() ([]byte, error) {
	n, err := m.d.DecodeBytesLen() // a str or bin code: n is not -1
	if err != nil {
		return nil, err
	}
	if n > m.r.Len() {
		return nil, fmt.Errorf("string or binary of %d bytes in %d bytes", n, m.r.Len())
	}
	pos := len(m.data) - m.r.Len()
	_, _ = m.r.Seek(int64(n), io.SeekCurrent) // within the bytes left
	return m.data[pos : pos+n : pos+n], nil
}

// errRefNotUTF8 rejects a str that is not UTF-8, as MessagePack requires.
var errRefNotUTF8 = errors.New("string is not valid UTF-8; send raw bytes as bin")

// key decodes a map key: a str or bin as a string, an integer in decimal;
// anything else is an error.
func (m *refMpDecoder) key(depth int) (string, error) {
	c, err := m.d.PeekCode()
	if err != nil {
		return "", err
	}
	if msgpcode.IsString(c) || msgpcode.IsBin(c) {
		return m.str()
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

func (m *refMpDecoder) decode(depth int) (any, error) {
	if depth > MaxDepth {
		return nil, errTooDeep
	}
	c, err := m.d.PeekCode()
	if err != nil {
		return nil, err
	}
	switch {
	case msgpcode.IsFixedArray(c) || c == msgpcode.Array16 || c == msgpcode.Array32:
		return m.array(depth)
	case msgpcode.IsFixedMap(c) || c == msgpcode.Map16 || c == msgpcode.Map32:
		return m.object(depth)
	case msgpcode.IsBin(c):
		b, err := m.raw()
		if err == nil {
			err = m.cost.charge(costBinary + int64(len(b)))
		}
		if err != nil {
			return nil, err
		}
		return bytes.Clone(b), nil
	case msgpcode.IsString(c):
		return m.str()
	case msgpcode.IsExt(c):
		// Only the timestamp (fixext 4, fixext 8 or ext 8 of 12 bytes, of
		// type -1), refused otherwise before the library reads a length.
		rest := m.data[len(m.data)-m.r.Len():]
		if c != msgpcode.FixExt4 && c != msgpcode.FixExt8 && (c != msgpcode.Ext8 || len(rest) < 2 || rest[1] != 12) {
			return nil, fmt.Errorf("ext 0x%02x is not a timestamp", c)
		}
		tm, err := m.d.DecodeTime()
		if err != nil {
			return nil, err
		}
		return tm.UTC().Format(time.RFC3339Nano), nil
	}
	return m.scalar(c)
}

func (m *refMpDecoder) array(depth int) (any, error) {
	n, err := m.d.DecodeArrayLen()
	if err != nil || n < 0 {
		return nil, err
	}
	if n > m.r.Len() { // every element takes at least one byte
		return nil, fmt.Errorf("array of %d elements in %d bytes", n, m.r.Len())
	}
	if err := m.cost.charge(costArray + costSlot*int64(n)); err != nil {
		return nil, err
	}
	out := make([]any, n)
	for i := range out {
		if out[i], err = m.decode(depth + 1); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (m *refMpDecoder) object(depth int) (any, error) {
	n, err := m.d.DecodeMapLen()
	if err != nil || n < 0 {
		return nil, err
	}
	if 2*n > m.r.Len() {
		return nil, fmt.Errorf("map of %d entries in %d bytes", n, m.r.Len())
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

// str reads a str or bin as a string, checked to be UTF-8 (a protocol key
// without allocating).
func (m *refMpDecoder) str() (string, error) {
	b, err := m.raw()
	switch {
	case err != nil:
		return "", err
	case !utf8.Valid(b):
		return "", errRefNotUTF8
	}
	if err := m.cost.charge(costString + int64(len(b))); err != nil {
		return "", err
	}
	return schema.Intern(b), nil
}

// scalar reads a number, nil or bool. Unsigned integers that fit int64
// become int64, so that an integer is an int64 whichever way it was sent.
func (m *refMpDecoder) scalar(c byte) (any, error) {
	d := m.d
	switch c {
	case msgpcode.Nil:
		return nil, d.DecodeNil()
	case msgpcode.True, msgpcode.False:
		return d.DecodeBool()
	}
	if err := m.cost.charge(costNumber); err != nil {
		return nil, err
	}
	switch {
	case c == msgpcode.Uint64 || c == msgpcode.Uint32 || c == msgpcode.Uint16 || c == msgpcode.Uint8:
		u, err := d.DecodeUint64()
		return fromUint(u), err
	case msgpcode.IsFixedNum(c) || c == msgpcode.Int8 || c == msgpcode.Int16 || c == msgpcode.Int32 || c == msgpcode.Int64:
		return d.DecodeInt64()
	case c == msgpcode.Float || c == msgpcode.Double:
		return d.DecodeFloat64()
	}
	return nil, fmt.Errorf("unknown MessagePack code 0x%02x", c)
}
