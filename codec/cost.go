package codec

import (
	"errors"
	"fmt"
)

// MaxDecoded bounds the memory a decoded message may take, estimated by
// the cost model below: a MessagePack body of one-byte empty maps takes 64
// bytes of memory per byte (a 1 MiB body, 70–100 MB). Past it Decode
// fails before it allocates the rest.
const MaxDecoded = 32 << 20

// ErrTooBig wraps the decoding error of a message past MaxDecoded.
var ErrTooBig = errors.New("codec: decodes to too much memory")

// The cost model in bytes, measured with Go's allocator: headers, one slot
// per element, map entries in groups of eight, lengths, boxed numbers.
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

// jsonCost estimates, in one pass over the bytes, the memory of the tree a
// JSON text decodes to, failing once it passes limit: encoding/json would
// allocate the whole tree before anything could be counted. The decoder
// checks the text's validity afterwards.
func jsonCost(data []byte, limit int64) (int64, error) {
	b := budget{max: limit}
	inString, escaped := false, false
	for _, c := range data {
		var n int64
		switch {
		case escaped:
			escaped, n = false, 1
		case inString && c == '\\':
			escaped = true
		case inString:
			if inString = c != '"'; inString {
				n = 1 // a byte of the string
			}
		case c == '"':
			inString, n = true, costString
		case c == '{':
			n = mapCost(1)
		case c == ':':
			n = costGroup / entriesPerG
		case c == '[':
			n = costArray + costSlot
		case c == ',':
			n = costSlot
		case c == '-' || c >= '0' && c <= '9' || c == 't' || c == 'f' || c == 'n':
			n = costNumber // once per byte of a number: an over-estimate
		}
		if n > 0 {
			if err := b.charge(n); err != nil {
				return b.used, err
			}
		}
	}
	return b.used, nil
}
