package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/mpreg/mpreg/bus"
	"github.com/mpreg/mpreg/codec"
	"github.com/mpreg/mpreg/objref"
	"github.com/mpreg/mpreg/objref/objstore"
	"github.com/mpreg/mpreg/schema"
)

// Defaults of the client's side of values by reference (docs/PROTOCOL.md
// §4.7).
const (
	// DefaultInlineMax is Config.Objects.InlineMax's default: 256 KiB.
	DefaultInlineMax = 256 << 10
	// DefaultMaxObjectBytes is Config.Objects.MaxObjectBytes's default: 1 GiB.
	DefaultMaxObjectBytes = 1 << 30
)

// objectsTimeout bounds opening the bucket, and deleting objects once a
// call is over.
const objectsTimeout = 5 * time.Second

// uploader is what the client writes in the metadata of the objects it
// stores (objstore.MetaNode), in place of a node's id.
const uploader = "client"

// objects is the client's side of values by reference: it uploads big
// arguments and resolves the references among results, in the cluster's
// object bucket, which it opens on first need.
type objects struct {
	bucket, prefix, cluster string
	inline                  int   // arguments larger than this are uploaded
	maxPayload              int   // the connection's
	maxObj                  int64 // Config.Objects.MaxObjectBytes

	mu    sync.Mutex
	store jetstream.ObjectStore // nil until opened
	c     *Client
}

func newObjects(c *Client) *objects {
	maxPayload := int(c.nc.MaxPayload())
	inline := c.cfg.Objects.InlineMax
	if inline <= 0 {
		inline = DefaultInlineMax
	}
	inline = min(inline, maxPayload/2)
	maxObj := c.cfg.Objects.MaxObjectBytes
	if maxObj <= 0 {
		maxObj = DefaultMaxObjectBytes
	}
	return &objects{bucket: bus.ObjectBucket(c.cfg.Prefix, c.cfg.Cluster), prefix: c.cfg.Prefix, cluster: c.cfg.Cluster,
		inline: inline, maxPayload: maxPayload, maxObj: maxObj, c: c}
}

// open returns the cluster's object bucket, opening (or creating) it on
// first use. Failures are not kept: the next call tries again.
func (o *objects) open(ctx context.Context) (jetstream.ObjectStore, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.store != nil {
		return o.store, nil
	}
	ctx, cancel := context.WithTimeout(ctx, objectsTimeout)
	defer cancel()
	js, err := jetstream.New(o.c.nc)
	if err != nil {
		return nil, err
	}
	store, err := bus.OpenObjects(ctx, js, bus.ObjectsConfig{Prefix: o.prefix, Cluster: o.cluster})
	if err != nil {
		return nil, err
	}
	o.store = store
	return store, nil
}

// tooBig is PAYLOAD_TOO_LARGE for a value over the client's
// Config.Objects.MaxObjectBytes.
func (o *objects) tooBig(what string, size int64) *schema.Error {
	return &schema.Error{Code: schema.CodePayloadTooLarge,
		Message: fmt.Sprintf("%s of %d bytes exceeds max_object_bytes=%d (the client's Config.Objects.MaxObjectBytes)", what, size, o.maxObj),
		Details: map[string]any{"limit": "max_object_bytes", "max": o.maxObj, "size": size}}
}

// resolution resolves the references among a request's results and
// undoes their escapes: with keep each reference becomes the objref.Ref it
// is, else the value its object holds, fetched and checked. It remembers
// the objects it fetched, for the caller to delete (forget) once it has
// them all.
type resolution struct {
	o       *objects
	keep    bool
	id      string         // the request's, for the logs
	fetched map[string]any // by object name
}

func (o *objects) resolver(keep bool, id string) *resolution {
	return &resolution{o: o, keep: keep, id: id}
}

func (rs *resolution) resolve(ctx context.Context, v any) (any, error) {
	if !objref.MentionsValue(v) {
		return v, nil
	}
	return objref.Unescape(v, func(r objref.Ref) (any, error) { return rs.value(ctx, r) })
}

func (rs *resolution) value(ctx context.Context, r objref.Ref) (any, error) {
	if rs.keep {
		return r, nil
	}
	if v, ok := rs.fetched[r.Name]; ok {
		return v, nil
	}
	o := rs.o
	if r.Bucket != o.bucket {
		return nil, &schema.Error{Code: schema.CodePermissionDenied, Details: map[string]any{"bucket": r.Bucket, "name": r.Name},
			Message: fmt.Sprintf("result %s: a reference to bucket %q, not the cluster's bucket %q", r, r.Bucket, o.bucket)}
	}
	if r.Size > o.maxObj {
		return nil, o.tooBig("result "+r.String(), r.Size)
	}
	store, err := o.open(ctx)
	if err != nil {
		return nil, objstore.StoreError(ctx, err, "opening bucket "+o.bucket+" to read result "+r.String())
	}
	data, e := objstore.Fetch(ctx, store, r, objstore.Limit{Max: o.maxObj, Error: o.tooBig})
	if e != nil {
		return nil, e
	}
	v, err := objstore.Decode(r, data)
	if err != nil {
		return nil, err
	}
	if rs.fetched == nil {
		rs.fetched = map[string]any{}
	}
	rs.fetched[r.Name] = v
	o.c.cfg.Logger.Debug("result fetched by reference", "request_id", rs.id, "object", r.Name, "size", r.Size, "encoding", r.Encoding)
	return v, nil
}

// forget deletes the objects the resolution fetched: the caller has had
// them.
func (rs *resolution) forget() {
	names := make([]string, 0, len(rs.fetched))
	for name := range rs.fetched {
		names = append(names, name)
	}
	rs.o.delete(rs.id, names, "result")
}

// delete deletes the named objects of the bucket, logging failures (the
// bucket's max age removes what is left).
func (o *objects) delete(id string, names []string, what string) {
	if len(names) == 0 {
		return
	}
	o.mu.Lock()
	store := o.store
	o.mu.Unlock()
	if store == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), objectsTimeout)
	defer cancel()
	for _, name := range names {
		if err := store.Delete(ctx, name); err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
			o.c.cfg.Logger.Warn("object not deleted", "request_id", id, "what", what, "bucket", o.bucket, "object", name, "error", err)
		}
	}
}

// uploads is what prepare uploaded for one request.
type uploads []string

// prepare makes a request's arguments ready to send: the objref.Ref
// values at their top level become references, literal maps that look
// like references or escapes are escaped, and any value larger than the
// inline limit is uploaded to the bucket and passed by reference. It
// returns the objects it uploaded, for the caller to delete when the
// request is over (also when prepare fails). args and kwargs are not
// changed: what changes is copied.
func (o *objects) prepare(ctx context.Context, id string, args []any, kwargs map[string]any, norm bool, up *uploads) ([]any, map[string]any, error) {
	args, refArgs := takeRefsList(args)
	kwargs, refKwargs := takeRefsMap(kwargs)
	if norm {
		var err error
		if args, err = normalizeArgs(args); err != nil {
			return nil, nil, err
		}
		if kwargs, err = normalizeKwargs(kwargs); err != nil {
			return nil, nil, err
		}
	}
	if objref.Mentions(args, kwargs) {
		args = escapeList(args)
		kwargs = objref.Escape(kwargs).(map[string]any)
	}
	if _, ok := codec.SizeWithinList(args, o.inline); !ok {
		var err error
		if args, err = o.uploadList(ctx, id, args, up); err != nil {
			return nil, nil, err
		}
	}
	if _, ok := codec.SizeWithinMap(kwargs, o.inline); !ok {
		var err error
		if kwargs, err = o.uploadMap(ctx, id, kwargs, up); err != nil {
			return nil, nil, err
		}
	}
	for i, r := range refArgs {
		args[i] = r.Tree()
	}
	for k, r := range refKwargs {
		kwargs[k] = r.Tree()
	}
	return args, kwargs, nil
}

func escapeList(l []any) []any {
	if l == nil {
		return nil
	}
	return objref.Escape(l).([]any)
}

// takeRefsList returns l with its objref.Ref elements taken out (nil in
// their place, in a copy), and them by index.
func takeRefsList(l []any) ([]any, map[int]objref.Ref) {
	var refs map[int]objref.Ref
	for i, a := range l {
		r, ok := asRef(a)
		if !ok {
			continue
		}
		if refs == nil {
			refs = map[int]objref.Ref{}
			l = append([]any(nil), l...)
		}
		refs[i] = r
		l[i] = nil
	}
	return l, refs
}

// takeRefsMap is takeRefsList of a map's values.
func takeRefsMap(m map[string]any) (map[string]any, map[string]objref.Ref) {
	var refs map[string]objref.Ref
	for k, a := range m {
		r, ok := asRef(a)
		if !ok {
			continue
		}
		if refs == nil {
			refs = map[string]objref.Ref{}
			m = cloneMap(m)
		}
		refs[k] = r
		m[k] = nil
	}
	return m, refs
}

func asRef(v any) (objref.Ref, bool) {
	switch r := v.(type) {
	case objref.Ref:
		return r, true
	case *objref.Ref:
		if r != nil {
			return *r, true
		}
	}
	return objref.Ref{}, false
}

func cloneMap(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// uploadList uploads the elements of l over the inline limit (upload),
// and returns l with references in their place (copied when any is).
func (o *objects) uploadList(ctx context.Context, id string, l []any, up *uploads) ([]any, error) {
	out := l
	for i, v := range l {
		ref, err := o.uploadBig(ctx, id, v, func() string { return fmt.Sprintf("argument %d", i) }, up)
		switch {
		case err != nil:
			return nil, err
		case ref == nil:
			continue
		case sameList(out, l):
			out = append([]any(nil), l...)
		}
		out[i] = ref
	}
	return out, nil
}

// uploadMap is uploadList of a map's values.
func (o *objects) uploadMap(ctx context.Context, id string, m map[string]any, up *uploads) (map[string]any, error) {
	out := m
	for k, v := range m {
		ref, err := o.uploadBig(ctx, id, v, func() string { return fmt.Sprintf("keyword argument %q", k) }, up)
		switch {
		case err != nil:
			return nil, err
		case ref == nil:
			continue
		case sameMap(out, m):
			out = cloneMap(m)
		}
		out[k] = ref
	}
	return out, nil
}

// uploadBig is upload of v when it is over the inline limit; nil when
// it is not, or goes inline anyway.
func (o *objects) uploadBig(ctx context.Context, id string, v any, what func() string, up *uploads) (map[string]any, error) {
	if _, ok := codec.SizeWithin(v, o.inline); ok {
		return nil, nil
	}
	return o.upload(ctx, id, what(), v, up)
}

// upload stores v, an (escaped) argument, as a new object and returns the
// reference to pass in its place: binary as it is, any other value in
// MessagePack. Without JetStream it returns nil, and v goes inline when it
// fits a message, else PAYLOAD_TOO_LARGE says to enable JetStream.
func (o *objects) upload(ctx context.Context, id, what string, v any, up *uploads) (map[string]any, error) {
	if size, ok := codec.SizeWithin(v, int(min(o.maxObj, int64(1<<62)))); !ok {
		return nil, o.tooBig(what, int64(size))
	}
	store, err := o.open(ctx)
	if err != nil {
		if size, ok := codec.SizeWithin(v, o.maxPayload); !ok {
			e := schema.Wrap(schema.CodePayloadTooLarge, err,
				"%s of %d bytes exceeds the NATS max payload of %d bytes; larger values pass by reference only with JetStream: enable it (mpreg server runs it unless --no-jetstream; a nats-server needs a jetstream block in its configuration)",
				what, size, o.maxPayload)
			e.Details = map[string]any{"limit": "max_payload", "size": int64(size), "max": int64(o.maxPayload)}
			return nil, e
		}
		o.c.cfg.Logger.Debug("no object bucket: a big argument goes inline", "request_id", id, "error", err)
		return nil, nil
	}
	data, encoding := []byte(nil), objref.Bytes
	if b, ok := v.([]byte); ok {
		data = b
	} else if data, err = codec.MsgPack.Encode(v); err != nil {
		return nil, schema.Wrap(schema.CodeInvalidArgument, err, "%s does not encode", what)
	} else {
		encoding = objref.MsgPack
	}
	if int64(len(data)) > o.maxObj {
		return nil, o.tooBig(what, int64(len(data)))
	}
	name := id + "/" + nuid.Next()
	*up = append(*up, name)
	info, err := store.Put(ctx, jetstream.ObjectMeta{Name: name, Metadata: map[string]string{objstore.MetaNode: uploader, objstore.MetaID: id}},
		bytes.NewReader(data))
	if err != nil {
		return nil, objstore.StoreError(ctx, err, "uploading "+what+" to bucket "+o.bucket)
	}
	o.c.cfg.Logger.Debug("argument passed by reference", "request_id", id, "object", name, "size", info.Size, "encoding", encoding)
	return objref.Ref{Bucket: o.bucket, Name: name, Size: int64(info.Size), SHA256: objstore.HexDigest(info.Digest), Encoding: encoding}.Tree(), nil
}

// results resolves the references among resp's results, in place (see
// resolution), and with forget deletes the objects it fetched.
func (o *objects) results(ctx context.Context, resp *schema.Response, keep, forget bool) error {
	var rs *resolution
	for name, v := range resp.Results {
		if !objref.MentionsValue(v) {
			continue
		}
		if rs == nil {
			rs = o.resolver(keep, resp.ID)
			if forget {
				defer rs.forget()
			}
		}
		x, err := rs.resolve(ctx, v)
		if err != nil {
			return err
		}
		resp.Results[name] = x
	}
	return nil
}

// result is results of one result.
func (o *objects) result(ctx context.Context, id string, v any, keep bool) (any, error) {
	if !objref.MentionsValue(v) {
		return v, nil
	}
	rs := o.resolver(keep, id)
	defer rs.forget()
	return rs.resolve(ctx, v)
}

// sameList says whether a and b are the same slice.
func sameList(a, b []any) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

// sameMap says whether a and b are the same map.
func sameMap(a, b map[string]any) bool {
	return len(a) == len(b) && reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
}
