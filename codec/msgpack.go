package codec

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"reflect"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"

	"github.com/mpreg/mpreg/schema"
)

type msgpackCodec struct{}

func (msgpackCodec) ContentType() string { return MsgPackType }

// Encode encodes v as MessagePack, reading json struct tags, with compact
// integers; []byte becomes bin.
func (msgpackCodec) Encode(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := msgpack.GetEncoder()
	defer msgpack.PutEncoder(enc)
	enc.Reset(&buf)
	enc.SetCustomStructTag("json")
	enc.UseCompactInts(true)
	if err := encodeMsgpack(enc, v, 0); err != nil {
		return nil, fmt.Errorf("codec: encode msgpack: %w", err)
	}
	return buf.Bytes(), nil
}

// encodeMsgpack writes the value model and the wire structs of the call
// path without reflection; anything else goes to the library's encoder.
func encodeMsgpack(enc *msgpack.Encoder, v any, depth int) error {
	if depth > MaxDepth {
		return fmt.Errorf("nesting deeper than %d", MaxDepth)
	}
	switch t := v.(type) {
	case nil:
		return enc.EncodeNil()
	case bool:
		return enc.EncodeBool(t)
	case int64:
		return enc.EncodeInt(t)
	case uint64:
		return enc.EncodeUint(t)
	case float64:
		return enc.EncodeFloat64(t)
	case []byte:
		return enc.EncodeBytes(t)
	case string:
		return encodeString(enc, t)
	case []any:
		if t == nil {
			return enc.EncodeNil()
		}
		if err := enc.EncodeArrayLen(len(t)); err != nil {
			return err
		}
		for _, e := range t {
			if err := encodeMsgpack(enc, e, depth+1); err != nil {
				return err
			}
		}
		return nil
	case map[string]any:
		if t == nil {
			return enc.EncodeNil()
		}
		for k := range t {
			if !utf8.ValidString(k) {
				return encodeMapSorted(enc, t, depth)
			}
		}
		if err := enc.EncodeMapLen(len(t)); err != nil {
			return err
		}
		for k, e := range t {
			if err := encodeString(enc, k); err != nil {
				return err
			}
			if err := encodeMsgpack(enc, e, depth+1); err != nil {
				return err
			}
		}
		return nil
	case *schema.ExecRequest:
		n := 5
		if t.DeadlineMS != 0 {
			n++
		}
		if t.Attempt != "" {
			n++
		}
		if err := enc.EncodeMapLen(n); err != nil {
			return err
		}
		if err := encodeFields(enc, "cluster", t.Cluster, "id", t.ID, "fun", t.Fun); err != nil {
			return err
		}
		if err := encodeField(enc, depth, "args", t.Args); err != nil {
			return err
		}
		if err := encodeField(enc, depth, "kwargs", t.Kwargs); err != nil {
			return err
		}
		if t.DeadlineMS != 0 {
			if err := encodeField(enc, depth, "deadline_ms", t.DeadlineMS); err != nil {
				return err
			}
		}
		if t.Attempt != "" {
			return encodeFields(enc, "attempt", t.Attempt)
		}
		return nil
	case *schema.Response:
		if t == nil {
			return enc.EncodeNil()
		}
		n := 2
		if t.Error != nil {
			n++
		}
		if err := enc.EncodeMapLen(n); err != nil {
			return err
		}
		if err := encodeFields(enc, "id", t.ID); err != nil {
			return err
		}
		if err := encodeField(enc, depth, "results", t.Results); err != nil {
			return err
		}
		if t.Error != nil {
			return encodeField(enc, depth, "error", t.Error)
		}
		return nil
	case *schema.Request:
		if t == nil {
			return enc.EncodeNil()
		}
		return encodeRequest(enc, t, depth)
	case schema.ExecResult:
		if err := enc.EncodeMapLen(1); err != nil {
			return err
		}
		return encodeField(enc, depth, "result", t.Result)
	case schema.ExecError:
		if err := enc.EncodeMapLen(1); err != nil {
			return err
		}
		return encodeField(enc, depth, "error", t.Error)
	case *schema.Error:
		if t == nil {
			return enc.EncodeNil()
		}
		n := 2
		for _, s := range []string{t.Step, t.Node} {
			if s != "" {
				n++
			}
		}
		if t.Details != nil {
			n++
		}
		if err := enc.EncodeMapLen(n); err != nil {
			return err
		}
		if err := encodeFields(enc, "code", string(t.Code), "message", t.Message); err != nil {
			return err
		}
		if t.Step != "" {
			if err := encodeField(enc, depth, "step", t.Step); err != nil {
				return err
			}
		}
		if t.Node != "" {
			if err := encodeField(enc, depth, "node", t.Node); err != nil {
				return err
			}
		}
		if t.Details != nil {
			return encodeField(enc, depth, "details", t.Details)
		}
		return nil
	}
	return encodeReflect(enc, reflect.ValueOf(v), depth)
}

// encodeRequest writes a request as the JSON encoder does, omitting the
// empty fields tagged omitempty.
func encodeRequest(enc *msgpack.Encoder, r *schema.Request, depth int) error {
	n := 1
	for _, set := range []bool{r.ID != "", r.TimeoutMS != 0, r.DeadlineMS != 0, r.Results != ""} {
		if set {
			n++
		}
	}
	if err := enc.EncodeMapLen(n); err != nil {
		return err
	}
	if r.ID != "" {
		if err := encodeFields(enc, "id", r.ID); err != nil {
			return err
		}
	}
	if err := enc.EncodeString("cmds"); err != nil {
		return err
	}
	if r.Cmds == nil {
		if err := enc.EncodeNil(); err != nil {
			return err
		}
	} else if err := enc.EncodeArrayLen(len(r.Cmds)); err != nil {
		return err
	}
	for i := range r.Cmds {
		c := &r.Cmds[i]
		n := 2
		for _, set := range []bool{len(c.Args) > 0, len(c.Kwargs) > 0, len(c.Locs) > 0} {
			if set {
				n++
			}
		}
		if err := enc.EncodeMapLen(n); err != nil {
			return err
		}
		if err := encodeFields(enc, "name", c.Name, "fun", c.Fun); err != nil {
			return err
		}
		if len(c.Args) > 0 {
			if err := encodeField(enc, depth+2, "args", c.Args); err != nil {
				return err
			}
		}
		if len(c.Kwargs) > 0 {
			if err := encodeField(enc, depth+2, "kwargs", c.Kwargs); err != nil {
				return err
			}
		}
		if len(c.Locs) > 0 {
			if err := enc.EncodeString("locs"); err != nil {
				return err
			}
			if err := enc.EncodeArrayLen(len(c.Locs)); err != nil {
				return err
			}
			for _, l := range c.Locs {
				if err := encodeString(enc, l); err != nil {
					return err
				}
			}
		}
	}
	if r.TimeoutMS != 0 {
		if err := encodeField(enc, depth, "timeout_ms", r.TimeoutMS); err != nil {
			return err
		}
	}
	if r.DeadlineMS != 0 {
		if err := encodeField(enc, depth, "deadline_ms", r.DeadlineMS); err != nil {
			return err
		}
	}
	if r.Results != "" {
		return encodeFields(enc, "results", r.Results)
	}
	return nil
}

// encodeReflect encodes a value outside the model as the JSON encoder does
// (appendReflect): structs field by field by their json tags, anything else
// through Normalize, so that both codecs carry the same keys and every
// string goes through encodeString.
func encodeReflect(enc *msgpack.Encoder, rv reflect.Value, depth int) error {
	if depth > MaxDepth {
		return fmt.Errorf("nesting deeper than %d", MaxDepth)
	}
	for rv.Kind() == reflect.Pointer || rv.Kind() == reflect.Interface {
		if rv.IsNil() {
			return enc.EncodeNil()
		}
		if rv.Kind() == reflect.Pointer && infoOf(rv.Type()).marshals() {
			break
		}
		rv = rv.Elem()
		depth++
	}
	if rv.Kind() != reflect.Struct || infoOf(rv.Type()).marshals() {
		n, err := normalizeValue(rv, depth)
		if err != nil {
			return err
		}
		return encodeMsgpack(enc, n, depth)
	}
	type set struct {
		f *field
		v reflect.Value
	}
	si := infoOf(rv.Type()).fields
	fields := make([]set, 0, len(si.list))
	for i := range si.list {
		f := &si.list[i]
		fv, ok := fieldForRead(rv, f.index)
		if !ok || f.omitEmpty && isEmptyValue(fv) || f.omitZero && isZeroValue(fv) {
			continue
		}
		fields = append(fields, set{f, fv})
	}
	if err := enc.EncodeMapLen(len(fields)); err != nil {
		return err
	}
	for _, fd := range fields {
		if err := encodeString(enc, fd.f.name); err != nil {
			return err
		}
		if fd.f.quoted {
			if s, ok := quoteScalar(fd.v); ok {
				if err := encodeString(enc, s); err != nil {
					return err
				}
				continue
			}
		}
		var err error
		if fd.v.Kind() != reflect.Interface && fd.v.CanInterface() && !hasMethods(fd.v.Type()) {
			err = encodeMsgpack(enc, fd.v.Interface(), depth+1)
		} else {
			err = encodeReflect(enc, fd.v, depth+1)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", fd.f.name, err)
		}
	}
	return nil
}

// encodeMapSorted writes a map with a key that is not UTF-8 in key order,
// as the JSON encoder does: two keys that differ only in bad bytes become
// the same key, and the last in order wins on both codecs' decoders.
func encodeMapSorted(enc *msgpack.Encoder, m map[string]any, depth int) error {
	if err := enc.EncodeMapLen(len(m)); err != nil {
		return err
	}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if err := encodeString(enc, k); err != nil {
			return err
		}
		if err := encodeMsgpack(enc, m[k], depth+1); err != nil {
			return err
		}
	}
	return nil
}

// encodeString writes s as a str, with each byte that is not UTF-8 replaced
// by U+FFFD as the JSON encoder does, so that both codecs carry the same
// text and every str a peer receives is valid.
func encodeString(enc *msgpack.Encoder, s string) error {
	if !utf8.ValidString(s) {
		var b strings.Builder
		for _, r := range s { // each bad byte ranges as one U+FFFD
			b.WriteRune(r)
		}
		s = b.String()
	}
	return enc.EncodeString(s)
}

func encodeField(enc *msgpack.Encoder, depth int, key string, v any) error {
	if err := enc.EncodeString(key); err != nil {
		return err
	}
	return encodeMsgpack(enc, v, depth+1)
}

// encodeFields writes key/string-value pairs.
func encodeFields(enc *msgpack.Encoder, kv ...string) error {
	for i := 0; i+1 < len(kv); i += 2 {
		if err := enc.EncodeString(kv[i]); err != nil {
			return err
		}
		if err := encodeString(enc, kv[i+1]); err != nil {
			return err
		}
	}
	return nil
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
	n, err := m.d.DecodeBytesLen()
	if err != nil {
		return nil, err
	}
	if n < 0 {
		n = 0
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

// checkExt checks that the ext value starting with code c fits in the
// bytes left.
func (m *mpDecoder) checkExt(c byte) error {
	rest := m.data[len(m.data)-m.r.Len():]
	var head, n int
	switch c {
	case msgpcode.FixExt1:
		head, n = 2, 1
	case msgpcode.FixExt2:
		head, n = 2, 2
	case msgpcode.FixExt4:
		head, n = 2, 4
	case msgpcode.FixExt8:
		head, n = 2, 8
	case msgpcode.FixExt16:
		head, n = 2, 16
	case msgpcode.Ext8:
		if head = 3; len(rest) >= 2 {
			n = int(rest[1])
		}
	case msgpcode.Ext16:
		if head = 4; len(rest) >= 3 {
			n = int(binary.BigEndian.Uint16(rest[1:]))
		}
	case msgpcode.Ext32:
		if head = 6; len(rest) >= 5 {
			n = int(binary.BigEndian.Uint32(rest[1:]))
		}
	}
	if head+n > len(rest) {
		return fmt.Errorf("ext value of %d bytes in %d bytes", head+n, len(rest))
	}
	return nil
}

// errNotUTF8 rejects a str (or map key) whose bytes are not UTF-8: the
// MessagePack spec requires it, and JSON could not carry the same value.
// Raw bytes travel as bin.
var errNotUTF8 = errors.New("string is not valid UTF-8; send raw bytes as bin")

// key decodes a map key: a str or bin as a string (a protocol key without
// allocating), an integer in decimal; anything else is an error.
func (m *mpDecoder) key(depth int) (string, error) {
	c, err := m.d.PeekCode()
	if err != nil {
		return "", err
	}
	if msgpcode.IsString(c) || msgpcode.IsBin(c) {
		b, err := m.raw()
		if err != nil {
			return "", err
		}
		if !utf8.Valid(b) {
			return "", errNotUTF8
		}
		if err := m.cost.charge(int64(len(b))); err != nil {
			return "", err
		}
		return internKey(b), nil
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

// internKey returns b as a string, shared when it is a known key.
func internKey(b []byte) string {
	if s, ok := knownKeys[string(b)]; ok {
		return s
	}
	return string(b)
}

func (m *mpDecoder) decode(depth int) (any, error) {
	d, r := m.d, m.r
	if depth > MaxDepth {
		return nil, fmt.Errorf("nesting deeper than %d", MaxDepth)
	}
	c, err := d.PeekCode()
	if err != nil {
		return nil, err
	}
	switch {
	case msgpcode.IsFixedArray(c) || c == msgpcode.Array16 || c == msgpcode.Array32:
		n, err := d.DecodeArrayLen()
		if err != nil {
			return nil, err
		}
		if n < 0 {
			return nil, nil
		}
		if n > r.Len() { // every element takes at least one byte
			return nil, fmt.Errorf("array of %d elements in %d bytes", n, r.Len())
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
	case msgpcode.IsFixedMap(c) || c == msgpcode.Map16 || c == msgpcode.Map32:
		n, err := d.DecodeMapLen()
		if err != nil {
			return nil, err
		}
		if n < 0 {
			return nil, nil
		}
		if 2*n > r.Len() {
			return nil, fmt.Errorf("map of %d entries in %d bytes", n, r.Len())
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
	case msgpcode.IsBin(c):
		b, err := m.raw()
		if err != nil {
			return nil, err
		}
		if err := m.cost.charge(costBinary + int64(len(b))); err != nil {
			return nil, err
		}
		return bytes.Clone(b), nil
	case msgpcode.IsString(c):
		b, err := m.raw()
		if err != nil {
			return nil, err
		}
		if !utf8.Valid(b) {
			return nil, errNotUTF8
		}
		if err := m.cost.charge(costString + int64(len(b))); err != nil {
			return nil, err
		}
		return string(b), nil
	case c == msgpcode.Uint64 || c == msgpcode.Uint32 || c == msgpcode.Uint16 || c == msgpcode.Uint8:
		if err := m.cost.charge(costNumber); err != nil {
			return nil, err
		}
		u, err := d.DecodeUint64()
		if err != nil {
			return nil, err
		}
		if u <= math.MaxInt64 {
			return int64(u), nil
		}
		return u, nil
	case msgpcode.IsFixedNum(c) || c == msgpcode.Int8 || c == msgpcode.Int16 || c == msgpcode.Int32 || c == msgpcode.Int64:
		if err := m.cost.charge(costNumber); err != nil {
			return nil, err
		}
		return d.DecodeInt64()
	case c == msgpcode.Float || c == msgpcode.Double:
		if err := m.cost.charge(costNumber); err != nil {
			return nil, err
		}
		return d.DecodeFloat64()
	case c == msgpcode.Nil:
		return nil, d.DecodeNil()
	case c == msgpcode.True || c == msgpcode.False:
		return d.DecodeBool()
	case msgpcode.IsExt(c):
		if err := m.checkExt(c); err != nil {
			return nil, err
		}
		v, err := d.DecodeInterface()
		if err != nil {
			return nil, err
		}
		return Normalize(v)
	}
	return nil, fmt.Errorf("unknown MessagePack code 0x%02x", c)
}
