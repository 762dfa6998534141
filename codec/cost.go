package codec

import (
	"errors"
	"fmt"
)

// MaxDecoded bounds the memory a decoded message may take, as estimated
// by the cost model below (about what Go allocates for the value tree).
// A message may take far more memory decoded than encoded: a MessagePack
// body of one-byte empty maps takes 64 bytes of memory per byte, so a
// 1 MiB body could take 70–100 MB. Past this bound Decode fails, before it
// allocates the rest.
const MaxDecoded = 32 << 20

// ErrTooBig wraps the decoding error of a message past MaxDecoded.
var ErrTooBig = errors.New("codec: decodes to too much memory")

// The cost model, in bytes, measured with Go's allocator: a container
// costs its header plus one interface slot per element; a map's entries
// come in groups of eight; strings and binary values cost their length
// plus a header; numbers are boxed.
const (
	costArray   = 24  // slice header
	costSlot    = 16  // one interface value in a list
	costMap     = 48  // map header
	costGroup   = 304 // one group of eight map entries
	costString  = 16  // string header (plus its length)
	costBinary  = 24  // slice header (plus its length)
	costNumber  = 8   // a boxed int64, uint64 or float64
	entriesPerG = 8
)

// mapCost is the cost of a map of n entries, keys and values aside.
func mapCost(n int) int64 {
	return costMap + costGroup*int64((n+entriesPerG-1)/entriesPerG)
}

// budget tracks the estimated memory of one decoding.
type budget struct {
	used, max int64
}

// charge adds n bytes, failing once the total passes max.
func (b *budget) charge(n int64) error {
	b.used += n
	if b.used > b.max {
		return fmt.Errorf("%w: more than %d bytes", ErrTooBig, b.max)
	}
	return nil
}

// jsonCost estimates, in one pass over the bytes and before any decoding,
// the memory of the tree a JSON text decodes to (see the cost model),
// failing as soon as it passes max. encoding/json would allocate the whole
// tree before anything could be counted. The text need not be valid: the
// decoder checks that afterwards.
func jsonCost(data []byte, limit int64) (int64, error) {
	b := budget{max: limit}
	inString, escaped := false, false
	strLen := 0
	for _, c := range data {
		if inString {
			switch {
			case escaped:
				escaped = false
				strLen++
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
				if err := b.charge(costString + int64(strLen)); err != nil {
					return b.used, err
				}
			default:
				strLen++
			}
			continue
		}
		var n int64
		switch c {
		case '"':
			inString, strLen = true, 0
		case '{':
			n = mapCost(1)
		case ':':
			n = costGroup / entriesPerG
		case '[':
			n = costArray + costSlot
		case ',':
			n = costSlot
		case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', 't', 'f', 'n':
			n = costNumber // counted once per byte of a number: an over-estimate
		}
		if n > 0 {
			if err := b.charge(n); err != nil {
				return b.used, err
			}
		}
	}
	return b.used, nil
}
