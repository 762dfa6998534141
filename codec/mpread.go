package codec

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/vmihailenco/msgpack/v5/msgpcode"

	"github.com/mpreg/mpreg/schema"
)

// mpReader is the schema.Reader over MessagePack bytes, built on the
// bounded decoder: it checks every length against the bytes left and
// charges the decoded-memory budget exactly as decoding the body into a
// tree would, so a body is refused, and its size estimated, the same way.
type mpReader struct {
	m     mpDecoder
	depth int          // of the next value
	left  [maxOpen]int // entries or elements left in each open map or list
	open  int          // how many are open
	err   error
}

var _ schema.Reader = (*mpReader)(nil)

func (r *mpReader) fail(err error) {
	if r.err == nil {
		r.err = err
	}
}

func (r *mpReader) Err() error { return r.err }

func (r *mpReader) finish() error {
	if r.err != nil {
		return r.err
	}
	if left := len(r.m.b) - r.m.i; left != 0 {
		return fmt.Errorf("%d bytes of trailing data after the value", left)
	}
	return nil
}

func (r *mpReader) used() int64 { return r.m.cost.used }

// mpKinds is the kind of each first byte that is not a fix type ("" for
// no value).
var mpKinds = func() (kinds [256]schema.Kind) {
	for c, k := range map[byte]schema.Kind{
		msgpcode.Nil: schema.KindNull, msgpcode.False: schema.KindBool, msgpcode.True: schema.KindBool,
		msgpcode.Map16: schema.KindMap, msgpcode.Map32: schema.KindMap,
		msgpcode.Array16: schema.KindList, msgpcode.Array32: schema.KindList,
		msgpcode.Bin8: schema.KindBinary, msgpcode.Bin16: schema.KindBinary, msgpcode.Bin32: schema.KindBinary,
		msgpcode.Str8: schema.KindString, msgpcode.Str16: schema.KindString, msgpcode.Str32: schema.KindString,
		// a timestamp decodes to its text
		msgpcode.FixExt4: schema.KindString, msgpcode.FixExt8: schema.KindString, msgpcode.Ext8: schema.KindString,
		msgpcode.Uint8: schema.KindNumber, msgpcode.Uint16: schema.KindNumber, msgpcode.Uint32: schema.KindNumber,
		msgpcode.Uint64: schema.KindNumber, msgpcode.Int8: schema.KindNumber, msgpcode.Int16: schema.KindNumber,
		msgpcode.Int32: schema.KindNumber, msgpcode.Int64: schema.KindNumber, msgpcode.Float: schema.KindNumber,
		msgpcode.Double: schema.KindNumber,
	} {
		kinds[c] = k
	}
	return kinds
}()

func (r *mpReader) Next() schema.Kind {
	if r.err != nil {
		return ""
	}
	if r.m.i >= len(r.m.b) {
		r.fail(errShort)
		return ""
	}
	switch c := r.m.b[r.m.i]; {
	case c <= msgpcode.PosFixedNumHigh || c >= msgpcode.NegFixedNumLow:
		return schema.KindNumber
	case c >= msgpcode.FixedMapLow && c <= msgpcode.FixedMapHigh:
		return schema.KindMap
	case c >= msgpcode.FixedArrayLow && c <= msgpcode.FixedArrayHigh:
		return schema.KindList
	case c >= msgpcode.FixedStrLow && c <= msgpcode.FixedStrHigh:
		return schema.KindString
	default:
		if k := mpKinds[c]; k != "" {
			return k
		}
		r.fail(fmt.Errorf("unknown MessagePack code 0x%02x", c))
		return ""
	}
}

// header reads the length of a map or list whose code is next: fix is
// its fix form's mask, c16 and c32 its longer forms' codes.
func (r *mpReader) header(fixMask, c16 byte) (int, error) {
	m := &r.m
	c := m.b[m.i]
	m.i++
	switch c {
	case c16:
		return m.length(2)
	case c16 + 1: // the 32-bit form
		return m.length(4)
	}
	return int(c & fixMask), nil
}

// push opens a map or list of n entries or elements.
func (r *mpReader) push(n int) {
	r.left[r.open] = n
	r.open++
	r.depth++
}

func (r *mpReader) opens() bool {
	if r.depth > MaxDepth || r.open >= maxOpen {
		r.fail(errTooDeep)
		return false
	}
	return true
}

func (r *mpReader) Map() int {
	if r.Next() != schema.KindMap || !r.opens() {
		return 0
	}
	m := &r.m
	n, err := r.header(msgpcode.FixedMapMask, msgpcode.Map16)
	if err == nil && 2*n > len(m.b)-m.i {
		err = fmt.Errorf("map of %d entries in %d bytes", n, len(m.b)-m.i)
	}
	if err == nil {
		err = m.cost.charge(mapCost(n))
	}
	if err != nil {
		r.fail(err)
		return 0
	}
	r.push(n)
	return n
}

func (r *mpReader) List() int {
	if r.Next() != schema.KindList || !r.opens() {
		return 0
	}
	m := &r.m
	n, err := r.header(msgpcode.FixedArrayMask, msgpcode.Array16)
	if err == nil && n > len(m.b)-m.i { // every element takes at least one byte
		err = fmt.Errorf("array of %d elements in %d bytes", n, len(m.b)-m.i)
	}
	if err == nil {
		err = m.cost.charge(costArray + costSlot*int64(n))
	}
	if err != nil {
		r.fail(err)
		return 0
	}
	r.push(n)
	return n
}

func (r *mpReader) More() bool {
	if r.err != nil {
		return false
	}
	if r.left[r.open-1] == 0 {
		r.open--
		r.depth--
		return false
	}
	r.left[r.open-1]--
	return true
}

func (r *mpReader) Key() (string, bool) {
	if !r.More() {
		return "", false
	}
	k, err := r.m.key(r.depth)
	if err != nil {
		r.fail(err)
		return "", false
	}
	return k, true
}

func (r *mpReader) Str() string {
	if r.Next() != schema.KindString {
		return ""
	}
	m := &r.m
	if c := m.b[m.i]; isStr(c) {
		m.i++
		s, err := m.str(c)
		if err != nil {
			r.fail(err)
		}
		return s
	}
	s, _ := r.Value().(string) // a timestamp
	return s
}

func (r *mpReader) Int() (int64, bool) {
	if r.Next() != schema.KindNumber {
		return 0, false
	}
	m := &r.m
	c := m.b[m.i]
	m.i++
	if err := m.cost.charge(costNumber); err != nil { // as mpDecoder.number and fixedNumber
		r.fail(err)
		return 0, false
	}
	switch {
	case c <= msgpcode.PosFixedNumHigh:
		return int64(c), true
	case c >= msgpcode.NegFixedNumLow:
		return int64(int8(c)), true
	}
	b, err := m.next(numberSize(c))
	if err != nil {
		r.fail(err)
		return 0, false
	}
	return fixedInt(c, b)
}

// numberSize is the size of a fixed-size number after its code.
func numberSize(c byte) int {
	switch c {
	case msgpcode.Uint8, msgpcode.Int8:
		return 1
	case msgpcode.Uint16, msgpcode.Int16:
		return 2
	case msgpcode.Uint32, msgpcode.Int32, msgpcode.Float:
		return 4
	}
	return 8
}

// fixedInt is the number of code c in b as an int64, as
// mpDecoder.fixedNumber and schema.IntOf make it, without boxing it.
func fixedInt(c byte, b []byte) (int64, bool) {
	switch c {
	case msgpcode.Uint8:
		return int64(b[0]), true
	case msgpcode.Int8:
		return int64(int8(b[0])), true
	case msgpcode.Uint16:
		return int64(binary.BigEndian.Uint16(b)), true
	case msgpcode.Int16:
		return int64(int16(binary.BigEndian.Uint16(b))), true
	case msgpcode.Uint32:
		return int64(binary.BigEndian.Uint32(b)), true
	case msgpcode.Int32:
		return int64(int32(binary.BigEndian.Uint32(b))), true
	case msgpcode.Uint64:
		u := binary.BigEndian.Uint64(b)
		return int64(u), u <= math.MaxInt64
	case msgpcode.Int64:
		return int64(binary.BigEndian.Uint64(b)), true
	case msgpcode.Float:
		return schema.IntOf(float64(math.Float32frombits(binary.BigEndian.Uint32(b))))
	}
	return schema.IntOf(math.Float64frombits(binary.BigEndian.Uint64(b)))
}

func (r *mpReader) Bool() bool {
	if r.Next() != schema.KindBool {
		return false
	}
	r.m.i++
	return r.m.b[r.m.i-1] == msgpcode.True
}

func (r *mpReader) Value() any {
	if r.err != nil {
		return nil
	}
	v, err := r.m.decode(r.depth)
	if err != nil {
		r.fail(err)
		return nil
	}
	return v
}

func (r *mpReader) Skip() { r.Value() }
