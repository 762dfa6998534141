// Package objstore reads and checks the objects that references name
// (docs/PROTOCOL.md §4.7) in a JetStream object bucket, for nodes and
// callers alike: it opens an object once its stored size and digest match
// the reference's, reads it with the digest checked, and decodes it. Its
// errors are *schema.Error of the codes §4.7 names.
package objstore

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mpreg/mpreg/codec"
	"github.com/mpreg/mpreg/objref"
	"github.com/mpreg/mpreg/schema"
)

// Keys of an object's metadata: who stored it, for which step or request.
const (
	MetaNode = "mpreg-node"
	MetaID   = "mpreg-id"
)

// HexDigest turns an object's digest, "SHA-256=<base64url>", into lower-
// case hex ("" when it is not one).
func HexDigest(d string) string {
	b, err := jetstream.DecodeObjectDigest(d)
	if err != nil || len(b) != 32 {
		return ""
	}
	return hex.EncodeToString(b)
}

// Mismatch is INTERNAL for an object whose bytes are not those its
// reference names, naming who stored it (meta's MetaNode).
func Mismatch(r objref.Ref, meta map[string]string, what string) *schema.Error {
	by := meta[MetaNode]
	if by == "" {
		by = "unknown"
	}
	return &schema.Error{Code: schema.CodeInternal,
		Message: fmt.Sprintf("object %s: %s (stored by node %s for %q)", r, what, by, meta[MetaID]),
		Details: map[string]any{"bucket": r.Bucket, "name": r.Name, "stored_by": by}}
}

// StoreError turns an error of the bucket into a *schema.Error: ctx
// ending is TIMEOUT or CANCELLED, any other INTERNAL.
func StoreError(ctx context.Context, err error, what string) *schema.Error {
	var se *schema.Error
	switch {
	case errors.As(err, &se):
		return se
	case ctx.Err() != nil:
		return schema.Ended(ctx, ctx.Err(), what+": the deadline passed", what+": cancelled")
	}
	return schema.Wrap(schema.CodeInternal, err, "%s", what)
}

// Missing is INVALID_ARGUMENT for a reference to an object the bucket does
// not hold.
func Missing(r objref.Ref) *schema.Error {
	return &schema.Error{Code: schema.CodeInvalidArgument, Details: map[string]any{"bucket": r.Bucket, "name": r.Name},
		Message: fmt.Sprintf("object %s does not exist: it expired, was deleted, or never was", r)}
}

// Limit is the largest object a reader takes, and the error of one larger.
type Limit struct {
	Max   int64
	Error func(what string, size int64) *schema.Error
}

// missingWait bounds the last of the looks again for an object not found:
// they span about twice as long.
const missingWait = 640 * time.Millisecond

// Open opens the object r names in store, r's bucket, for reading, once
// its stored size and digest match r's and it is within lim.
func Open(ctx context.Context, store jetstream.ObjectStore, r objref.Ref, lim Limit) (jetstream.ObjectResult, *jetstream.ObjectInfo, *schema.Error) {
	res, err := store.Get(ctx, r.Name)
	// An object just stored may not have reached the replica that answers
	// (object buckets allow direct gets from any replica): look again for
	// a while before calling it missing.
	for wait := 10 * time.Millisecond; errors.Is(err, jetstream.ErrObjectNotFound) && wait <= missingWait; wait *= 2 {
		select {
		case <-ctx.Done():
		case <-time.After(wait):
			res, err = store.Get(ctx, r.Name)
			continue
		}
		break
	}
	if err != nil {
		if errors.Is(err, jetstream.ErrObjectNotFound) {
			return nil, nil, Missing(r)
		}
		return nil, nil, StoreError(ctx, err, "fetching object "+r.String())
	}
	info, err := res.Info()
	e := (*schema.Error)(nil)
	switch {
	case err != nil:
		e = StoreError(ctx, err, "fetching object "+r.String())
	case info.Bucket != r.Bucket: // a link into another bucket
		e = &schema.Error{Code: schema.CodePermissionDenied, Details: map[string]any{"bucket": r.Bucket, "name": r.Name},
			Message: fmt.Sprintf("object %s links to bucket %q, not this cluster's", r, info.Bucket)}
	case int64(info.Size) > lim.Max:
		e = lim.Error("object "+r.String(), int64(info.Size))
	case int64(info.Size) != r.Size || HexDigest(info.Digest) != r.SHA256:
		e = Mismatch(r, info.Metadata, fmt.Sprintf("the reference says %d bytes of SHA-256 %s, the bucket holds %d bytes of SHA-256 %s",
			r.Size, r.SHA256, info.Size, HexDigest(info.Digest)))
	}
	if e != nil {
		_ = res.Close()
		return nil, nil, e
	}
	return res, info, nil
}

// Reader reads an object Open opened, counting its bytes into Count (when
// not nil), and turns nats.go's errors into *schema.Error: a digest that
// does not match (nats.go checks it at the end) is Mismatch.
type Reader struct {
	Ctx   context.Context
	Res   jetstream.ObjectResult
	Ref   objref.Ref
	Info  *jetstream.ObjectInfo
	Count *atomic.Int64
}

func (f *Reader) Read(p []byte) (int, error) {
	n, err := f.Res.Read(p)
	if f.Count != nil {
		f.Count.Add(int64(n))
	}
	switch {
	case err == nil || errors.Is(err, io.EOF):
		return n, err
	case errors.Is(err, jetstream.ErrDigestMismatch):
		return n, Mismatch(f.Ref, f.Info.Metadata, "its bytes do not match its SHA-256")
	}
	return n, StoreError(f.Ctx, err, "fetching object "+f.Ref.String())
}

// ReadAll reads the whole object, of the reference's size, and checks that
// nothing follows and that its digest matches.
func (f *Reader) ReadAll() ([]byte, *schema.Error) {
	data := make([]byte, f.Ref.Size)
	if _, err := io.ReadFull(f, data); err != nil {
		return nil, schema.AsError(err)
	}
	var one [1]byte
	if n, err := f.Read(one[:]); n != 0 || !errors.Is(err, io.EOF) { // at the end, nats.go checks its digest
		if err == nil || errors.Is(err, io.EOF) {
			err = Mismatch(f.Ref, f.Info.Metadata, "the object is longer than its reference says")
		}
		return nil, schema.AsError(err)
	}
	return data, nil
}

// Fetch opens and reads the whole object r names (see Open and ReadAll).
func Fetch(ctx context.Context, store jetstream.ObjectStore, r objref.Ref, lim Limit) ([]byte, *schema.Error) {
	res, info, e := Open(ctx, store, r, lim)
	if e != nil {
		return nil, e
	}
	defer func() { _ = res.Close() }()
	return (&Reader{Ctx: ctx, Res: res, Ref: r, Info: info}).ReadAll()
}

// Decode returns the value an object's bytes hold in the reference's
// encoding: binary as data itself, msgpack and json decoded (within
// codec.MaxDecoded) and unescaped (objref.Unescape, references inside
// left as they are).
func Decode(r objref.Ref, data []byte) (any, error) {
	var c codec.Codec
	switch r.Encoding {
	case objref.Bytes:
		return data, nil
	case objref.MsgPack:
		c = codec.MsgPack
	default:
		c = codec.JSON
	}
	v, _, err := codec.DecodeSized(c, data, codec.MaxDecoded)
	switch {
	case errors.Is(err, codec.ErrTooBig):
		return nil, &schema.Error{Code: schema.CodePayloadTooLarge,
			Message: fmt.Sprintf("object %s decodes to more than %s: pass a value this large as binary", r, schema.LimitText("max_decoded_bytes", codec.MaxDecoded)),
			Details: map[string]any{"limit": "max_decoded_bytes", "max": int64(codec.MaxDecoded)}}
	case err != nil:
		return nil, schema.Wrap(schema.CodeInvalidArgument, err, "object %s does not decode as %s", r, r.Encoding)
	}
	return objref.Unescape(v, nil)
}
