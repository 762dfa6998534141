package durable

import (
	"encoding/binary"
	"errors"
)

// maxDepth bounds the nesting of a stored value; this package's values
// nest one level (a map of scalars and byte strings).
const maxDepth = 16

var (
	errShort = errors.New("msgpack: a length runs past the end")
	errDeep  = errors.New("msgpack: nested too deep")
	errCode  = errors.New("msgpack: unused code 0xc1")
	errExtra = errors.New("msgpack: bytes after the value")
)

// checkMsgpack checks that b is one msgpack value whose every length and
// count fits in b, nested at most maxDepth deep, before the decoder sees
// it: the decoder would otherwise spend time and memory on lengths that
// corrupt bytes claim, or recurse as deep as they nest.
func checkMsgpack(b []byte) error {
	open := []int{1} // values still to read in each open container
	i := 0
	for len(open) > 0 {
		if open[len(open)-1] == 0 {
			open = open[:len(open)-1]
			continue
		}
		open[len(open)-1]--
		if i >= len(b) {
			return errShort
		}
		skip, items, err := header(b[i:])
		if err != nil {
			return err
		}
		if skip > len(b)-i || items > len(b)-i-skip {
			return errShort // every item takes a byte at least
		}
		i += skip
		if items > 0 {
			if len(open) == maxDepth {
				return errDeep
			}
			open = append(open, items)
		}
	}
	if i != len(b) {
		return errExtra
	}
	return nil
}

// header reads the value header at the start of b: how many bytes the
// header and any payload take (skip), and how many values follow inside it
// (items: the elements of an array, keys and values of a map).
func header(b []byte) (skip, items int, err error) {
	c := b[0]
	switch {
	case c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3:
		return 1, 0, nil
	case c <= 0x8f:
		return 1, 2 * int(c&0x0f), nil
	case c <= 0x9f:
		return 1, int(c & 0x0f), nil
	case c <= 0xbf:
		return 1 + int(c&0x1f), 0, nil
	case c == 0xc1:
		return 0, 0, errCode
	}
	return sized(b)
}

// sized reads the headers from 0xc4 to 0xdf.
func sized(b []byte) (skip, items int, err error) {
	c := b[0]
	switch c {
	case 0xca, 0xcc, 0xcd, 0xce, 0xcb, 0xcf, 0xd0, 0xd1, 0xd2, 0xd3:
		return 1 + fixedSize(c), 0, nil
	case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8: // fixext: a type byte and 1 to 16 bytes
		return 2 + 1<<(c-0xd4), 0, nil
	}
	n, w := lengthOf(c)
	if len(b) < 1+w {
		return 0, 0, errShort
	}
	var v uint64
	switch w {
	case 1:
		v = uint64(b[1])
	case 2:
		v = uint64(binary.BigEndian.Uint16(b[1:]))
	default:
		v = uint64(binary.BigEndian.Uint32(b[1:]))
	}
	if v > uint64(len(b)) {
		return 0, 0, errShort
	}
	switch n {
	case 'b': // bin, str: bytes follow
		return 1 + w + int(v), 0, nil
	case 'e': // ext: a type byte and bytes follow
		return 2 + w + int(v), 0, nil
	case 'a':
		return 1 + w, int(v), nil
	default: // map
		return 1 + w, 2 * int(v), nil
	}
}

// fixedSize is the payload size of a number header.
func fixedSize(c byte) int {
	switch c {
	case 0xcc, 0xd0:
		return 1
	case 0xcd, 0xd1:
		return 2
	case 0xca, 0xce, 0xd2:
		return 4
	}
	return 8
}

// lengthOf says what a header from 0xc4 to 0xdf, other than numbers and
// fixext, holds ('b' bytes, 'e' ext, 'a' array, 'm' map) and the width of
// its length.
func lengthOf(c byte) (kind byte, width int) {
	switch c {
	case 0xc4, 0xd9:
		return 'b', 1
	case 0xc5, 0xda:
		return 'b', 2
	case 0xc6, 0xdb:
		return 'b', 4
	case 0xc7:
		return 'e', 1
	case 0xc8:
		return 'e', 2
	case 0xc9:
		return 'e', 4
	case 0xdc:
		return 'a', 2
	case 0xdd:
		return 'a', 4
	case 0xde:
		return 'm', 2
	}
	return 'm', 4 // 0xdf
}
