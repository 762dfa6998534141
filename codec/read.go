package codec

import (
	"sync"

	"github.com/mpreg/mpreg/schema"
)

// maxOpen bounds how many maps and lists a Reader over bytes holds open:
// wire structs nest a few deep, and their deeper values are read whole
// (Value), to MaxDepth.
const maxOpen = 32

// byteReader is a schema.Reader over a body's bytes.
type byteReader interface {
	schema.Reader
	// finish reports the first decoding error, or bytes left after the
	// value.
	finish() error
	// used is the estimated memory of the body decoded (see DecodeSized).
	used() int64
}

// ReadSized reads one value of data, encoded in c, through read (such as
// schema.ReadRequest) straight from the bytes: only the values a wire
// struct holds as trees (args, kwargs, results, details) are decoded into
// the value model. It is bounded as DecodeSized is, by limit bytes of
// estimated memory (at most MaxDecoded) and MaxDepth, and returns the same
// estimate. A body that does not decode is an error wrapping ErrDecode
// (and ErrTooBig past the limit) whatever read made of it; read's own
// error comes back as it gave it.
func ReadSized[T any](c Codec, data []byte, limit int64, read func(schema.Reader) (T, error)) (v T, size int64, err error) {
	limit = min(limit, MaxDecoded)
	var r byteReader
	switch c {
	case JSON:
		cost, err := jsonCost(data, limit) // before anything is allocated
		if err != nil {
			return v, cost, decodeErr(c, err)
		}
		t := newJSONText(data)
		defer t.put()
		t.r = jsonReader{t: t, cost: cost}
		r = &t.r
	case MsgPack:
		m := mpReaders.Get().(*mpReader)
		defer mpReaders.Put(m)
		*m = mpReader{m: mpDecoder{b: data, cost: budget{max: limit}}}
		defer func() { m.m.b = nil }()
		r = m
	default:
		tree, size, err := DecodeSized(c, data, limit)
		if err != nil {
			return v, size, err
		}
		v, err = read(schema.TreeReader(tree))
		return v, size, err
	}
	v, err = read(r)
	if derr := r.finish(); derr != nil {
		var zero T
		return zero, r.used(), decodeErr(c, derr)
	}
	return v, r.used(), err
}

// The readers are reused (jsonText holds the JSON one): what they read is
// copied out of the body.
var mpReaders = sync.Pool{New: func() any { return new(mpReader) }}
