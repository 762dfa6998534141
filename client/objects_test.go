package client_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/mpreg/mpreg/bus"
	"github.com/mpreg/mpreg/client"
	"github.com/mpreg/mpreg/internal/testbytes"
	"github.com/mpreg/mpreg/internal/testcluster"
	"github.com/mpreg/mpreg/node"
	"github.com/mpreg/mpreg/objref"
	"github.com/mpreg/mpreg/objref/objstore"
	"github.com/mpreg/mpreg/schema"
)

// big is the size of the values of these tests: over the default inline
// limit (256 KiB), within a message (1 MiB).
const big = 600 << 10

var (
	pattern = testbytes.Pattern
	hexSHA  = testbytes.SHA256
)

func registerData(n *node.Node) {
	must := func(err error) {
		if err != nil {
			panic(err)
		}
	}
	must(n.Register("make", func(size, seed int) []byte { return pattern(size, seed) }))
	must(n.Register("digest", func(b []byte) string { return hexSHA(b) }))
	must(n.Register("same", func(x any) any { return x }))
	must(n.Register("digest2", func(a, b []byte) string { return hexSHA(a) + hexSHA(b) }))
	must(n.Register("kwdigest", func(data []byte, tag string) string { return tag + ":" + hexSHA(data) }, node.WithParams("data", "tag")))
}

// jsSetup is a server with JetStream, a node "a" with the data functions,
// and a client; bucket is the cluster's object bucket, read directly.
type jsSetup struct {
	url    string
	c      *client.Client
	bucket jetstream.ObjectStore
}

func newJSSetup(t *testing.T, cfg client.Config) *jsSetup {
	t.Helper()
	srv := testcluster.Server(t, testcluster.WithJetStream(t.TempDir()))
	n := testcluster.Node(t, srv.ClientURL(), testcluster.NodeConfig(t, "a"), registerData)
	testcluster.WaitForRoute(t, n.Table(), "make", nil, "a")
	c := testcluster.Client(t, srv.ClientURL(), cfg)
	testcluster.WaitForRoute(t, c.Table(), "make", nil, "a")
	ctx, cancel := context.WithTimeout(context.Background(), testcluster.Timeout)
	defer cancel()
	js, err := jetstream.New(testcluster.Conn(t, srv.ClientURL()))
	require.NoError(t, err)
	store, err := bus.OpenObjects(ctx, js, bus.ObjectsConfig{Cluster: bus.DefaultCluster})
	require.NoError(t, err)
	return &jsSetup{url: srv.ClientURL(), c: c, bucket: store}
}

// objects lists the names of the bucket's objects.
func (s *jsSetup) objects(t *testing.T) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testcluster.Timeout)
	defer cancel()
	l, err := s.bucket.List(ctx)
	if errors.Is(err, jetstream.ErrNoObjectsFound) {
		return nil
	}
	require.NoError(t, err)
	var names []string
	for _, i := range l {
		names = append(names, i.Name)
	}
	return names
}

func callCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// TestBigArgumentByReference: a []byte argument over the inline limit is
// uploaded and passed by reference (the node fetches it: fetched_bytes),
// in args and kwargs, on the client's direct path and through a planner;
// the client deletes its uploads when the call returns.
func TestBigArgumentByReference(t *testing.T) {
	s := newJSSetup(t, client.Config{})
	ctx := callCtx(t)
	data := pattern(big, 3)
	got, err := client.CallAs[string](ctx, s.c, "digest", []any{data})
	require.NoError(t, err)
	require.Equal(t, hexSHA(data), got)
	require.Empty(t, s.objects(t), "the upload is deleted")

	var tr client.Trace
	got, err = client.CallAs[string](ctx, s.c, "kwdigest", nil, client.WithKwargs(map[string]any{"data": data, "tag": "t"}), client.WithTrace(&tr))
	require.NoError(t, err)
	require.Equal(t, "t:"+hexSHA(data), got)
	require.Len(t, tr.Entries, 1)
	require.EqualValues(t, big, tr.Entries[0].FetchedBytes, "the node fetched the argument from the bucket")
	require.Empty(t, s.objects(t), "the upload is deleted")

	other := pattern(big+1, 4)
	got, err = client.CallAs[string](ctx, s.c, "digest2", []any{data, other})
	require.NoError(t, err)
	require.Equal(t, hexSHA(data)+hexSHA(other), got, "two big arguments")
	require.Empty(t, s.objects(t))

	// Any value, not only binary: stored in MessagePack, both ways (at
	// 1.2 MB it cannot travel inline).
	text := map[string]any{"text": strings.Repeat("é", big), "lit": map[string]any{"$obj": "x"}}
	v, err := s.c.Call(ctx, "same", []any{text})
	require.NoError(t, err)
	require.Equal(t, text, v)
	require.Empty(t, s.objects(t))

	small := pattern(1000, 3)
	tr = client.Trace{}
	_, err = s.c.Call(ctx, "digest", []any{small}, client.WithTrace(&tr))
	require.NoError(t, err)
	require.Zero(t, tr.Entries[0].FetchedBytes, "a small argument travels inline")
}

// TestBigResultResolved: a result passed by reference comes back as its
// value, through Call (direct and planned) and Run, and its object is
// deleted once the client has it.
func TestBigResultResolved(t *testing.T) {
	s := newJSSetup(t, client.Config{})
	ctx := callCtx(t)
	want := pattern(big, 5)
	v, err := s.c.Call(ctx, "make", []any{big, 5})
	require.NoError(t, err)
	require.Equal(t, want, v)
	require.Empty(t, s.objects(t), "the result's object is deleted")

	v, err = s.c.Call(ctx, "make", []any{big, 5}, client.WithID("planned-1"))
	require.NoError(t, err)
	require.Equal(t, want, v)
	require.Empty(t, s.objects(t))

	resp, err := s.c.Run(ctx, &schema.Request{Cmds: []schema.Command{
		{Name: "m", Fun: "make", Args: []any{big, 5}},
		{Name: "same", Fun: "same", Args: []any{"m"}},
	}})
	require.NoError(t, err)
	require.Equal(t, want, resp.Results["same"])
	for _, name := range s.objects(t) {
		// m's object, an intermediate value, is the planner's to delete.
		require.NotContains(t, name, "/same/", "the result's object is deleted")
	}
}

// TestResultKept: with WithKeepRefs (or Config.Objects.KeepRefs) a result passed
// by reference comes back as the objref.Ref it is; its object stays, any
// NATS client reads it, and the Ref passes it on as an argument.
func TestResultKept(t *testing.T) {
	s := newJSSetup(t, client.Config{})
	ctx := callCtx(t)
	want := pattern(big, 7)
	v, err := s.c.Call(ctx, "make", []any{big, 7}, client.WithKeepRefs())
	require.NoError(t, err)
	ref, ok := v.(objref.Ref)
	require.True(t, ok, "got %T", v)
	require.Equal(t, objref.Ref{Bucket: "mpreg-default", Name: ref.Name, Size: big, SHA256: hexSHA(want), Encoding: objref.Bytes}, ref)

	data, e := objstore.Fetch(ctx, s.bucket, ref, objstore.Limit{Max: big})
	require.Nil(t, e)
	require.Equal(t, want, data)

	got, err := client.CallAs[string](ctx, s.c, "digest", []any{ref})
	require.NoError(t, err)
	require.Equal(t, hexSHA(want), got)
	require.Equal(t, []string{ref.Name}, s.objects(t), "a kept result stays; an argument passed as a Ref is not the client's upload")

	// The same with Config.Objects.KeepRefs, through Run.
	kc := testcluster.Client(t, s.url, client.Config{Objects: client.ObjectsConfig{KeepRefs: true}})
	resp, err := kc.Run(ctx, &schema.Request{Cmds: []schema.Command{{Name: "m", Fun: "make", Args: []any{big, 8}}}})
	require.NoError(t, err)
	ref2, ok := resp.Results["m"].(objref.Ref)
	require.True(t, ok, "got %T", resp.Results["m"])
	require.Equal(t, hexSHA(pattern(big, 8)), ref2.SHA256)
	require.ElementsMatch(t, []string{ref.Name, ref2.Name}, s.objects(t))
}

// TestResolveErrors: a reference whose object does not match it is
// INTERNAL naming the node that stored it; a missing one INVALID_ARGUMENT;
// one over the client's Objects.MaxObjectBytes PAYLOAD_TOO_LARGE; one to another
// bucket PERMISSION_DENIED.
func TestResolveErrors(t *testing.T) {
	s := newJSSetup(t, client.Config{})
	ctx := callCtx(t)
	v, err := s.c.Call(ctx, "make", []any{big, 9}, client.WithKeepRefs())
	require.NoError(t, err)
	ref := v.(objref.Ref)

	for name, c := range map[string]struct {
		edit    func(r *objref.Ref)
		code    schema.Code
		details map[string]any
	}{
		"digest":  {func(r *objref.Ref) { r.SHA256 = hexSHA(nil) }, schema.CodeInternal, map[string]any{"stored_by": "a"}},
		"size":    {func(r *objref.Ref) { r.Size-- }, schema.CodeInternal, map[string]any{"stored_by": "a"}},
		"missing": {func(r *objref.Ref) { r.Name += "-gone" }, schema.CodeInvalidArgument, nil},
		"bucket":  {func(r *objref.Ref) { r.Bucket = "other" }, schema.CodePermissionDenied, map[string]any{"bucket": "other"}},
	} {
		t.Run(name, func(t *testing.T) {
			r := ref
			c.edit(&r)
			_, err := s.c.Resolve(ctx, r.Tree())
			var se *schema.Error
			require.ErrorAs(t, err, &se)
			require.Equal(t, c.code, se.Code, "%v", se)
			for k, want := range c.details {
				require.Equal(t, want, se.Details.(map[string]any)[k], "%v", se)
			}
		})
	}
	require.Equal(t, []string{ref.Name}, s.objects(t), "a result that did not resolve is not deleted")

	small := newJSSetup(t, client.Config{Objects: client.ObjectsConfig{MaxObjectBytes: 1000}})
	_, err = small.c.Call(ctx, "make", []any{big, 9})
	var se *schema.Error
	require.ErrorAs(t, err, &se)
	require.Equal(t, schema.CodePayloadTooLarge, se.Code)
	require.Equal(t, "max_object_bytes", se.Details.(map[string]any)["limit"])
}

// TestLiteralsRoundTrip: maps that look like references or escapes,
// passed as arguments, come back as they were: the client escapes them
// going out and unescapes results.
func TestLiteralsRoundTrip(t *testing.T) {
	s := newJSSetup(t, client.Config{})
	ctx := callCtx(t)
	for _, lit := range []any{
		map[string]any{"$obj": int64(1)},
		map[string]any{"$lit": map[string]any{"$obj": "x"}},
		[]any{map[string]any{"k": map[string]any{"$lit": "y"}}},
		objref.Ref{Bucket: "b", Name: "n", Size: 1, SHA256: hexSHA(nil), Encoding: objref.Bytes}.Tree(),
	} {
		v, err := s.c.Call(ctx, "same", []any{lit})
		require.NoError(t, err)
		require.Equal(t, lit, v)
		resp, err := s.c.Run(ctx, &schema.Request{Cmds: []schema.Command{{Name: "s", Fun: "same", Args: []any{lit}}}})
		require.NoError(t, err)
		require.Equal(t, lit, resp.Results["s"])
	}
}

// TestWithoutJetStream: without JetStream a big argument goes inline when
// it fits a message; one that does not is PAYLOAD_TOO_LARGE saying to
// enable JetStream.
func TestWithoutJetStream(t *testing.T) {
	srv := testcluster.Server(t)
	n := testcluster.Node(t, srv.ClientURL(), testcluster.NodeConfig(t, "a"), registerData)
	testcluster.WaitForRoute(t, n.Table(), "digest", nil, "a")
	c := testcluster.Client(t, srv.ClientURL(), client.Config{})
	testcluster.WaitForRoute(t, c.Table(), "digest", nil, "a")
	ctx := callCtx(t)
	data := pattern(big, 1)
	got, err := client.CallAs[string](ctx, c, "digest", []any{data})
	require.NoError(t, err)
	require.Equal(t, hexSHA(data), got)

	_, err = c.Call(ctx, "digest", []any{pattern(2<<20, 1)})
	var se *schema.Error
	require.ErrorAs(t, err, &se)
	require.Equal(t, schema.CodePayloadTooLarge, se.Code)
	require.Contains(t, se.Message, "enable it")
}
