package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/mpreg/mpreg/bus"
	"github.com/mpreg/mpreg/codec"
	"github.com/mpreg/mpreg/mesh"
	"github.com/mpreg/mpreg/objref"
	"github.com/mpreg/mpreg/objref/objstore"
	"github.com/mpreg/mpreg/schema"
)

// objects passes values by reference through the cluster's JetStream
// object bucket (docs/PROTOCOL.md §4.7): it stores a result larger than
// the inline limit and sends a reference in its place, and resolves the
// references in a step's arguments before the function is called. The
// bucket is opened once the node's probe finds JetStream (see
// probeJetStream); until then a step that needs it waits for the probe.
type objects struct {
	node, prefix, cluster, bucket string
	inlineMax                     int           // Objects.InlineMax
	maxObj                        int64         // Objects.MaxBytes
	ttl, resultTTL                time.Duration // Objects.TTL, ResultTTL
	maxPayload                    int           // the connection's
	replicas                      int           // Objects.Replicas
	cache                         *objCache
	log                           *slog.Logger
	known                         <-chan struct{} // closed when the probe has ended (Node.JetStreamKnown)

	bucketStore atomic.Pointer[bucketStore] // nil without JetStream
}

// bucketStore is the open bucket and the inline limit that goes with it.
type bucketStore struct {
	store  jetstream.ObjectStore
	inline int // values larger than this go by reference
}

func newObjects(e *env) *objects {
	c := e.cfg.Objects
	return &objects{node: e.cfg.NodeID, prefix: e.cfg.Prefix, cluster: e.cfg.Cluster, bucket: bus.ObjectBucket(e.cfg.Prefix, e.cfg.Cluster),
		inlineMax: c.InlineMax, maxObj: c.MaxBytes, ttl: c.TTL, resultTTL: c.ResultTTL, replicas: c.Replicas, maxPayload: int(e.nc.MaxPayload()), cache: newObjCache(c.Cache),
		log: e.log, known: closedChan}
}

// openTimeout bounds opening the bucket.
const openTimeout = 5 * time.Second

// open opens (or creates) the cluster's object bucket on nc, whose account
// has JetStream: from then on larger values pass by reference. It logs
// which, once. The node calls it from its JetStream probe, before the
// probe says it has ended.
func (o *objects) open(ctx context.Context, nc *nats.Conn) {
	inline := o.inlineMax
	if half := o.maxPayload / 2; inline > half {
		o.log.Info("inline limit lowered to half the NATS max payload", "inline_max", o.inlineMax, "max_payload", o.maxPayload, "inline", half)
		inline = half
	}
	ctx, cancel := context.WithTimeout(ctx, openTimeout)
	defer cancel()
	js, err := jetstream.New(nc)
	var store jetstream.ObjectStore
	if err == nil {
		store, err = bus.OpenObjects(ctx, js, bus.ObjectsConfig{Prefix: o.prefix, Cluster: o.cluster, TTL: o.ttl, Replicas: o.replicas})
	}
	if err != nil {
		o.log.Warn("JetStream object bucket unavailable: values pass inline only, up to the NATS max payload", "bucket", o.bucket, "error", err)
		return
	}
	if st, err := store.Status(ctx); err == nil && st.TTL() != o.ttl {
		o.log.Info("the object bucket exists with another max age than object_ttl: it keeps its own", "bucket", o.bucket,
			"bucket_ttl", st.TTL(), "object_ttl", o.ttl)
	}
	o.bucketStore.Store(&bucketStore{store: store, inline: inline})
	o.log.Info("values larger than the inline limit pass by reference", "bucket", o.bucket, "inline", inline,
		"max_object_bytes", o.maxObj, "object_cache", o.cache.max, "result_ttl", o.resultTTL)
}

// current returns the open bucket, or nil without JetStream. While the
// node's probe for JetStream has not ended it waits for it, as long as ctx
// allows.
func (o *objects) current(ctx context.Context) *bucketStore {
	if b := o.bucketStore.Load(); b != nil {
		return b
	}
	select {
	case <-o.known:
	case <-ctx.Done():
	}
	return o.bucketStore.Load()
}

// limit is the largest value that travels inline with b (nil: without
// JetStream).
func (o *objects) limit(b *bucketStore) int {
	if b == nil {
		return o.maxPayload
	}
	return b.inline
}

// minInline is the smallest inline limit the node may have: values up to
// it travel inline whether JetStream is there or not.
func (o *objects) minInline() int { return min(o.inlineMax, o.maxPayload/2) }

// stepInputs is what resolving a step's arguments opened and fetched.
type stepInputs struct {
	b       *bucketStore // nil without JetStream
	fetched atomic.Int64
	blobs   []*Blob
	owned   [][]byte // binary values made for the step alone (see owned)
}

// ownedBufs holds, by their first byte, the binary values resolved for a
// step that nothing else holds (fetched, or copied from the cache), until
// the step ends. Binding one to a []byte parameter takes it from here and
// needs no copy: a value as big as an object is not held twice.
var ownedBufs sync.Map // *byte → struct{}

// own marks b as the step's own, to be bound without a copy.
func (st *stepInputs) own(b []byte) {
	if len(b) > 0 {
		ownedBufs.Store(&b[0], struct{}{})
		st.owned = append(st.owned, b)
	}
}

// takeOwned says whether b is a step's own binary value (see ownedBufs),
// and unmarks it: a value given twice is copied the second time.
func takeOwned(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	_, ok := ownedBufs.LoadAndDelete(&b[0])
	return ok
}

// bytes returns the bytes fetched so far (0 for nil).
func (st *stepInputs) bytes() int64 {
	if st == nil {
		return 0
	}
	return st.fetched.Load()
}

// close closes the Blobs opened for the step (nothing for nil).
func (st *stepInputs) close() {
	if st == nil {
		return
	}
	for _, b := range st.blobs {
		_ = b.Close()
	}
	for _, b := range st.owned {
		ownedBufs.Delete(&b[0])
	}
}

// resolve returns args and kwargs with their references resolved and
// their escapes undone (objref.Unescape): a reference given to a *Blob
// parameter of f becomes a Blob that streams the object, any other the
// value itself. Arguments without such maps come back as they are, with
// a nil *stepInputs.
func (o *objects) resolve(ctx context.Context, f *fn, args []any, kwargs map[string]any) ([]any, map[string]any, *stepInputs, *schema.Error) {
	if !objref.Mentions(args, kwargs) {
		return args, kwargs, nil, nil
	}
	st := &stepInputs{b: o.current(ctx)}
	args, kwargs, e := o.openBlobs(ctx, st, f, args, kwargs)
	if e != nil {
		return nil, nil, st, e
	}
	res := func(r objref.Ref) (any, error) { return o.value(ctx, st, r) }
	args, err := objref.UnescapeList(args, res)
	if err == nil {
		kwargs, err = objref.UnescapeValues(kwargs, res)
	}
	if err != nil {
		var re *objref.Error
		if errors.As(err, &re) {
			return nil, nil, st, schema.Wrap(schema.CodeInvalidArgument, err, "%s: a malformed reference", f.name)
		}
		return nil, nil, st, schema.AsError(err)
	}
	return args, kwargs, st, nil
}

// openBlobs replaces the references given to f's *Blob parameters with
// Blobs (in copies of args and kwargs).
func (o *objects) openBlobs(ctx context.Context, st *stepInputs, f *fn, args []any, kwargs map[string]any) ([]any, map[string]any, *schema.Error) {
	copied := false
	for _, i := range f.blobs.pos {
		if i >= len(args) || !objref.IsRef(args[i]) {
			continue
		}
		b, e := o.openBlob(ctx, st, args[i].(map[string]any))
		if e != nil {
			return nil, nil, e
		}
		if !copied {
			args, copied = slices.Clone(args), true
		}
		args[i] = b
	}
	copied = false
	for _, k := range f.blobs.names {
		if !objref.IsRef(kwargs[k]) {
			continue
		}
		b, e := o.openBlob(ctx, st, kwargs[k].(map[string]any))
		if e != nil {
			return nil, nil, e
		}
		if !copied {
			kwargs, copied = cloneMap(kwargs), true
		}
		kwargs[k] = b
	}
	return args, kwargs, nil
}

func cloneMap(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// openBlob opens the object a reference names as a Blob: from the cache,
// or streamed from the bucket. An object that is not binary is read
// whole, and must be a string or binary.
func (o *objects) openBlob(ctx context.Context, st *stepInputs, m map[string]any) (*Blob, *schema.Error) {
	r, err := objref.Parse(m[objref.KeyObj])
	if err != nil {
		return nil, schema.Wrap(schema.CodeInvalidArgument, err, "a malformed reference")
	}
	if e := o.check(st.b, r); e != nil {
		return nil, e
	}
	if r.Encoding != objref.Bytes {
		v, err := o.value(ctx, st, r)
		if err != nil {
			return nil, schema.AsError(err)
		}
		b, ok := toBlob(v)
		if !ok {
			return nil, schema.Errorf(schema.CodeInvalidArgument, "object %s is not binary or a string, which a *node.Blob reads", r)
		}
		return b, nil
	}
	if c, hit, e := o.cached(r); hit || e != nil {
		if e != nil {
			return nil, e
		}
		return BytesBlob(c.data), nil // read-only: the cache's bytes are safe
	}
	res, info, e := o.get(ctx, st.b, r)
	if e != nil {
		return nil, e
	}
	b := &Blob{r: &objstore.Reader{Ctx: ctx, Res: res, Ref: r, Info: info, Count: &st.fetched}, size: r.Size, close: res.Close}
	st.blobs = append(st.blobs, b)
	return b, nil
}

// check refuses a reference this node must not or cannot read.
func (o *objects) check(b *bucketStore, r objref.Ref) *schema.Error {
	details := map[string]any{"bucket": r.Bucket, "name": r.Name}
	switch {
	case r.Bucket != o.bucket:
		// A caller must not use MPREG to read storage it could not read
		// itself.
		return &schema.Error{Code: schema.CodePermissionDenied, Details: details,
			Message: fmt.Sprintf("object %s: a reference to bucket %q, not this cluster's bucket %q", r, r.Bucket, o.bucket)}
	case b == nil:
		return &schema.Error{Code: schema.CodeInvalidArgument, Details: details,
			Message: fmt.Sprintf("object %s: node %s has no JetStream and cannot read values passed by reference", r, o.node)}
	case r.Size > o.maxObj:
		return o.tooBig(fmt.Sprintf("object %s", r), r.Size)
	}
	return nil
}

// tooBig is PAYLOAD_TOO_LARGE for a value over max_object_bytes.
func (o *objects) tooBig(what string, size int64) *schema.Error {
	return &schema.Error{Code: schema.CodePayloadTooLarge,
		Message: fmt.Sprintf("%s of %d bytes exceeds %s", what, size, schema.LimitText("max_object_bytes", o.maxObj)),
		Details: map[string]any{"limit": "max_object_bytes", "max": o.maxObj, "size": size}}
}

// value returns the value a reference stands for, read whole: binary as
// []byte, any other decoded in its encoding and unescaped.
func (o *objects) value(ctx context.Context, st *stepInputs, r objref.Ref) (any, error) {
	if e := o.check(st.b, r); e != nil {
		return nil, e
	}
	data, fromCache, e := o.load(ctx, st, r)
	if e != nil {
		return nil, e
	}
	if r.Encoding == objref.Bytes {
		if fromCache {
			data = slices.Clone(data) // the function may change its input
		}
		st.own(data)
		return data, nil
	}
	return objstore.Decode(r, data)
}

// cached returns the object r names from the cache, if there: a kept
// object whose digest is not r's is a mismatch.
func (o *objects) cached(r objref.Ref) (*cached, bool, *schema.Error) {
	c, ok := o.cache.get(r.Name)
	if !ok {
		return nil, false, nil
	}
	if c.sha256 != r.SHA256 || int64(len(c.data)) != r.Size {
		return nil, false, objstore.Mismatch(r, map[string]string{objstore.MetaNode: o.node},
			fmt.Sprintf("the reference says %d bytes of SHA-256 %s, this node stored %d bytes of SHA-256 %s", r.Size, r.SHA256, len(c.data), c.sha256))
	}
	return c, true, nil
}

// load returns the bytes of the object r names: from the cache (fromCache;
// the caller must not change them), or fetched whole.
func (o *objects) load(ctx context.Context, st *stepInputs, r objref.Ref) (data []byte, fromCache bool, _ *schema.Error) {
	if c, hit, e := o.cached(r); hit || e != nil {
		if e != nil {
			return nil, false, e
		}
		return c.data, true, nil
	}
	res, info, e := o.get(ctx, st.b, r)
	if e != nil {
		return nil, false, e
	}
	defer func() { _ = res.Close() }()
	data, e = (&objstore.Reader{Ctx: ctx, Res: res, Ref: r, Info: info, Count: &st.fetched}).ReadAll()
	return data, false, e
}

// get opens the object r names for reading, once its stored size and
// digest match r's.
func (o *objects) get(ctx context.Context, b *bucketStore, r objref.Ref) (jetstream.ObjectResult, *jetstream.ObjectInfo, *schema.Error) {
	return objstore.Open(ctx, b.store, r, objstore.Limit{Max: o.maxObj, Error: o.tooBig})
}

// output turns a function's result into the value that travels: escaped
// (objref.Escape), inline when it fits the inline limit, else stored in
// the bucket and replaced by a reference. id names the step in the
// object's name and metadata.
func (o *objects) output(ctx context.Context, name string, res any, sid stepID) (any, *schema.Error) {
	if b, ok := res.(*Blob); ok {
		return o.putBlob(ctx, name, b, sid.String())
	}
	out, done, res, e := inlined(name, res, o.minInline())
	if done {
		return out, e
	}
	b := o.current(ctx)
	if b == nil {
		if out, done, res, e = inlined(name, res, o.maxPayload); done {
			return out, e
		}
		size, _ := codec.SizeWithin(res, o.maxPayload)
		return nil, o.overPayload("the result of "+name, size)
	}
	if size, ok := codec.SizeWithin(res, int(o.maxObj)); !ok {
		return nil, o.tooBig("the result of "+name, int64(size))
	}
	if out, e = normalize(name, res); e != nil {
		return nil, e
	}
	if data, ok := out.([]byte); ok {
		return o.put(ctx, b, sid.String(), bytes.NewReader(data), data, objref.Bytes)
	}
	data, err := codec.MsgPack.Encode(objref.Escape(out))
	if err != nil {
		return nil, schema.Wrap(schema.CodeFunctionError, err, "%s returned a value that does not encode", name)
	}
	if int64(len(data)) > o.maxObj {
		return nil, o.tooBig("the result of "+name, int64(len(data)))
	}
	return o.put(ctx, b, sid.String(), bytes.NewReader(data), data, objref.MsgPack)
}

// inlined returns res ready to travel inline, normalized and escaped, when
// it fits limit (done). Else next is res to go on with: normalized when it
// had to be to be measured (a struct, say, counts as small until then).
func inlined(name string, res any, limit int) (out any, done bool, next any, e *schema.Error) {
	if _, ok := codec.SizeWithin(res, limit); !ok {
		return nil, false, res, nil
	}
	if out, e = normalize(name, res); e != nil {
		return nil, true, nil, e
	}
	if isModel(res) {
		return objref.Escape(out), true, nil, nil
	}
	if _, ok := codec.SizeWithin(out, limit); ok {
		return objref.Escape(out), true, nil, nil
	}
	return nil, false, out, nil
}

// overPayload is PAYLOAD_TOO_LARGE for a value over the max payload on a
// node without JetStream.
func (o *objects) overPayload(what string, size int) *schema.Error {
	e := mesh.TooLarge(what, size, int64(o.maxPayload))
	e.Message = fmt.Sprintf("%s exceeds the NATS max payload of %d bytes; larger values pass by reference only with JetStream: enable it (mpreg server runs it unless --no-jetstream; a nats-server needs a jetstream block in its configuration)",
		what, o.maxPayload)
	return e
}

// normalize is codec.Normalize of a function's result.
func normalize(name string, res any) (any, *schema.Error) {
	out, err := codec.Normalize(res)
	if err != nil {
		return nil, schema.Wrap(schema.CodeFunctionError, err, "%s returned a value that does not encode", name)
	}
	return out, nil
}

// isModel says whether v is of the value model's types (see codec), which
// SizeWithin measures.
func isModel(v any) bool {
	switch v.(type) {
	case nil, bool, int64, float64, string, []byte, []any, map[string]any:
		return true
	}
	return false
}

// putBlob reads a Blob a function returned: up to the inline limit it
// travels inline as binary, beyond it is streamed into the bucket.
func (o *objects) putBlob(ctx context.Context, name string, b *Blob, id string) (any, *schema.Error) {
	defer func() { _ = b.Close() }()
	bs := o.current(ctx)
	head := make([]byte, o.limit(bs)+1)
	n, err := io.ReadFull(b, head)
	switch {
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		return head[:n], nil
	case err != nil:
		return nil, blobError(name, err)
	case bs == nil:
		return nil, o.overPayload("the result of "+name, n)
	}
	r := &capReader{r: io.MultiReader(bytes.NewReader(head), b), left: o.maxObj}
	v, e := o.put(ctx, bs, id, r, nil, objref.Bytes)
	if r.over {
		return nil, o.tooBig("the result of "+name, o.maxObj+1)
	}
	if e != nil && r.err != nil {
		return nil, blobError(name, r.err)
	}
	return v, e
}

// blobError is the error of reading a Blob a function returned: its own
// code when it is a *schema.Error, else FUNCTION_ERROR.
func blobError(name string, err error) *schema.Error {
	var se *schema.Error
	if errors.As(err, &se) {
		return se
	}
	return schema.Wrap(schema.CodeFunctionError, err, "reading the *node.Blob %s returned", name)
}

// capReader reads r up to left bytes; one more byte is an error.
type capReader struct {
	r    io.Reader
	left int64
	over bool
	err  error // r's error, other than io.EOF
}

var errOverCap = errors.New("over max_object_bytes")

func (c *capReader) Read(p []byte) (int, error) {
	if int64(len(p)) > c.left+1 {
		p = p[:c.left+1]
	}
	n, err := c.r.Read(p)
	if int64(n) > c.left {
		c.over = true
		return 0, errOverCap
	}
	c.left -= int64(n)
	if err != nil && err != io.EOF {
		c.err = err
	}
	return n, err
}

// put stores what r reads as a new object and returns its reference;
// data, when not nil, is the whole of it, kept in the cache.
func (o *objects) put(ctx context.Context, b *bucketStore, id string, r io.Reader, data []byte, encoding string) (any, *schema.Error) {
	name := id + "/" + nuid.Next()
	info, err := b.store.Put(ctx, jetstream.ObjectMeta{Name: name, Metadata: map[string]string{objstore.MetaNode: o.node, objstore.MetaID: id}}, r)
	if err != nil {
		return nil, objstore.StoreError(ctx, err, "storing a result in bucket "+o.bucket)
	}
	ref := objref.Ref{Bucket: o.bucket, Name: name, Size: int64(info.Size), SHA256: objstore.HexDigest(info.Digest), Encoding: encoding}
	if data != nil {
		o.cache.put(name, ref.SHA256, data)
	}
	o.log.Debug("result stored by reference", "request_id", id, "object", name, "size", ref.Size, "encoding", encoding)
	return ref.Tree(), nil
}
