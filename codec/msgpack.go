package codec

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"time"
	"unicode/utf8"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

type msgpackCodec struct{}

func (msgpackCodec) ContentType() string { return MsgPackType }

// Encode encodes v as MessagePack with compact integers; []byte becomes
// bin, and each byte of a string that is not UTF-8 becomes U+FFFD, as in
// JSON, so that every str a peer receives is valid. Values outside the
// model go through Normalize.
func (msgpackCodec) Encode(v any) ([]byte, error) {
	t, _, err := modeMsgPack.normalize(v, 0)
	if err != nil {
		return nil, fmt.Errorf("codec: encode msgpack: %w", err)
	}
	var buf bytes.Buffer
	enc := msgpack.GetEncoder()
	defer msgpack.PutEncoder(enc)
	enc.Reset(&buf)
	enc.UseCompactInts(true)
	if err := enc.Encode(t); err != nil {
		return nil, fmt.Errorf("codec: encode msgpack: %w", err)
	}
	return buf.Bytes(), nil
}

// Decode decodes one MessagePack value into the value model.
func (c msgpackCodec) Decode(data []byte) (any, error) {
	v, _, err := c.decode(data, MaxDecoded)
	return v, err
}

func (c msgpackCodec) decode(data []byte, limit int64) (any, int64, error) {
	r := bytes.NewReader(data)
	dec := msgpack.GetDecoder()
	defer msgpack.PutDecoder(dec)
	dec.Reset(r)
	m := &mpDecoder{d: dec, r: r, data: data, cost: budget{max: limit}}
	v, err := m.decode(0)
	if err != nil {
		return nil, m.cost.used, decodeErr(c, err)
	}
	if r.Len() != 0 {
		return nil, m.cost.used, decodeErr(c, fmt.Errorf("%d bytes of trailing data after the value", r.Len()))
	}
	return v, m.cost.used, nil
}

// mpDecoder walks one MessagePack value. The msgpack.Decoder reads r
// directly (a *bytes.Reader needs no buffering), so r.Len() is the number of
// bytes left and data[len(data)-r.Len():] is what comes next. Every length
// read from the input is checked against that before anything is allocated.
type mpDecoder struct {
	d    *msgpack.Decoder
	r    *bytes.Reader
	data []byte
	cost budget // charged before each allocation
}

// raw reads a str or bin header and returns the bytes that follow, without
// copying them.
func (m *mpDecoder) raw() ([]byte, error) {
	n, err := m.d.DecodeBytesLen() // a str or bin code: n is not -1
	if err != nil {
		return nil, err
	}
	if n > m.r.Len() {
		return nil, fmt.Errorf("string or binary of %d bytes in %d bytes", n, m.r.Len())
	}
	pos := len(m.data) - m.r.Len()
	if _, err := m.r.Seek(int64(n), io.SeekCurrent); err != nil {
		return nil, err
	}
	return m.data[pos : pos+n : pos+n], nil
}

// errNotUTF8 rejects a str (or map key) whose bytes are not UTF-8: the
// MessagePack spec requires it, and JSON could not carry the same value.
// Raw bytes travel as bin.
var errNotUTF8 = errors.New("string is not valid UTF-8; send raw bytes as bin")

// key decodes a map key: a str or bin as a string, an integer in decimal;
// anything else is an error.
func (m *mpDecoder) key(depth int) (string, error) {
	c, err := m.d.PeekCode()
	if err != nil {
		return "", err
	}
	if msgpcode.IsString(c) || msgpcode.IsBin(c) {
		k, err := m.text(false)
		s, _ := k.(string)
		return s, err
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

// knownKeys holds the keys of docs/PROTOCOL.md's bodies: decoding one of them
// returns the shared string instead of allocating a copy per message.
var knownKeys = func() map[string]string {
	m := map[string]string{}
	for _, k := range []string{
		"id", "cmds", "name", "fun", "args", "kwargs", "locs", "timeout_ms", "results",
		"error", "code", "message", "step", "node", "details", "cluster", "deadline_ms", "result",
		"incarnation", "version", "funs", "codecs", "advertised_urls", "meta", "proto",
		"seq", "load", "inflight", "limit", "$ref", "path",
	} {
		m[k] = k
	}
	return m
}()

// intern returns b as a string, shared when it is a known key.
func intern(b []byte) string {
	if s, ok := knownKeys[string(b)]; ok {
		return s
	}
	return string(b)
}

func (m *mpDecoder) decode(depth int) (any, error) {
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
	case msgpcode.IsBin(c) || msgpcode.IsString(c):
		return m.text(msgpcode.IsBin(c))
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

func (m *mpDecoder) array(depth int) (any, error) {
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

func (m *mpDecoder) object(depth int) (any, error) {
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

// text reads a str (checked to be UTF-8; a protocol key without
// allocating) or a bin (copied).
func (m *mpDecoder) text(bin bool) (any, error) {
	b, err := m.raw()
	switch {
	case err != nil:
		return nil, err
	case !bin && !utf8.Valid(b):
		return nil, errNotUTF8
	}
	cost := int64(costString)
	if bin {
		cost = costBinary
	}
	if err := m.cost.charge(cost + int64(len(b))); err != nil {
		return nil, err
	}
	if bin {
		return bytes.Clone(b), nil
	}
	return intern(b), nil
}

// scalar reads a number, nil or bool. Unsigned integers that fit int64
// become int64, so that an integer is an int64 whichever way it was sent.
func (m *mpDecoder) scalar(c byte) (any, error) {
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
