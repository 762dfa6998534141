package node

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"sync"
)

// Blob is a binary value read or written as a stream of bytes, for a
// function that would rather not hold a big value in memory (values
// larger than the node's inline limit travel by reference through
// JetStream, docs/PROTOCOL.md §4.7).
//
// As a parameter (*Blob) of a function given to Register, it takes an
// argument that is a reference to a binary object, which the function
// reads as it arrives from JetStream instead of receiving it whole; the
// object's SHA-256 is checked when the Blob reaches its end (a mismatch
// is a Read error, an INTERNAL *schema.Error). It also takes inline
// binary or string arguments, read from memory. The Blob is valid only
// while the function runs; the node closes it when the function returns.
//
// As a function's result (*Blob, made with NewBlob), it is read to its end
// by the node: a value of up to the inline limit travels inline as binary,
// a larger one is streamed into the cluster's object bucket and travels
// as a reference. The node closes it (and its reader, if that is an
// io.Closer). A Blob is only ever a whole argument or a whole result, never
// part of a list or map.
type Blob struct {
	r     io.Reader
	size  int64
	close func() error
	once  sync.Once
}

// NewBlob returns a Blob that reads r, of size bytes (-1 when unknown).
func NewBlob(r io.Reader, size int64) *Blob {
	var c func() error
	if rc, ok := r.(io.Closer); ok {
		c = rc.Close
	}
	return &Blob{r: r, size: size, close: c}
}

// BytesBlob returns a Blob that reads b.
func BytesBlob(b []byte) *Blob { return NewBlob(bytes.NewReader(b), int64(len(b))) }

// Read reads the next bytes of the value.
func (b *Blob) Read(p []byte) (int, error) { return b.r.Read(p) }

// Size returns the value's size in bytes, or -1 when it is not known.
func (b *Blob) Size() int64 { return b.size }

// Close releases the Blob's reader; reading after it fails. It is
// idempotent.
func (b *Blob) Close() error {
	var err error
	b.once.Do(func() {
		if b.close != nil {
			err = b.close()
		}
	})
	return err
}

// errBlobNested is the error of a Blob inside a list or map.
var errBlobNested = errors.New("a *node.Blob must be a function's whole result, not part of a list or map")

// MarshalJSON refuses: a Blob is not a value of a list or map (see Blob).
func (b *Blob) MarshalJSON() ([]byte, error) { return nil, errBlobNested }

var blobType = reflect.TypeFor[*Blob]()

// toBlob is the Blob an argument v stands for: a Blob the node opened for
// a reference, binary or a string read from memory, or nil for null.
func toBlob(v any) (*Blob, bool) {
	switch x := v.(type) {
	case *Blob:
		return x, true
	case []byte:
		return BytesBlob(x), true
	case string:
		return NewBlob(strings.NewReader(x), int64(len(x))), true
	case nil:
		return nil, true
	}
	return nil, false
}

// blobSlots are the parameters of a function that take a *Blob: by
// position, and by name when the function has WithParams.
type blobSlots struct {
	pos   []int
	names []string
}

// blobSlotsOf finds the *Blob parameters of f, a function given to
// Register with the parameter names params (a RawFunc has none).
func blobSlotsOf(f any, params []string) blobSlots {
	var s blobSlots
	t := reflect.TypeOf(f)
	if t == nil || t.Kind() != reflect.Func || t == reflect.TypeFor[RawFunc]() {
		return s
	}
	first := 0
	if t.NumIn() > 0 && t.In(0) == ctxType {
		first = 1
	}
	for i := first; i < t.NumIn(); i++ {
		if t.In(i) != blobType || (t.IsVariadic() && i == t.NumIn()-1) {
			continue
		}
		s.pos = append(s.pos, i-first)
		if i-first < len(params) {
			s.names = append(s.names, params[i-first])
		}
	}
	return s
}

// blobValue binds an argument to a *Blob parameter.
func blobValue(fun, name string, v any) (reflect.Value, error) {
	b, ok := toBlob(v)
	if !ok {
		return reflect.Value{}, badParam(fmt.Errorf("want binary or a string, got %T", v), fun, name)
	}
	return reflect.ValueOf(b), nil
}
