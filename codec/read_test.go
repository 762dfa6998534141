package codec_test

import (
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mpreg/mpreg/codec"
	"github.com/mpreg/mpreg/schema"
)

// Each FuzzRead target reads the same bytes by both paths, the tree
// (DecodeSized, then the Parse function) and the Reader over the bytes
// (ReadSized with the Read function), in JSON or, with mp, MessagePack:
// both must refuse a body that does not decode (past the budget both),
// estimate the same size, give the same error (code, message, details) or
// the same value.

var readRequestSeeds = []string{
	`{"id":"r1","cmds":[{"name":"a","fun":"f","args":[1,"x",{"$ref":"b"}],"kwargs":{"k":[true,null,1.5]},"locs":["gpu"]},{"name":"b","fun":"g"}],"timeout_ms":2500,"deadline_ms":1700000000000,"results":"all","on_error":"continue","route_wait_ms":5,"dry_run":false,"trace":true,"stream":false,"progress":true,"split_results":true,"other":{"x":[1,2]}}`,
	`{"id":"d1","cmds":[{"name":"a","fun":"f"}],"durable":true,"submit":true,"result_ttl_ms":60000}`,
	`{"cmds":[{"name":"a","fun":"f"}],"submit":true,"result_ttl_ms":-5,"durable":"yes"}`,
	`{"cmds":[{"name":"a","fun":"f"}],"cmds":null}`,
	`{"cmds":[{"name":"a","fun":"f"},{"name":"","fun":"a.b"}],"timeout_ms":-1,"results":"some"}`,
	`{"cmds":[{"name":"a","fun":"f","locs":["gpu",1]}],"id":7}`,
	`{"cmds":[],"timeout_ms":1.5,"deadline_ms":-2}`,
	`{"id":"x","id":null,"cmds":"x","on_error":"sometimes"}`,
	`{"route_wait_ms":1e300,"trace":1,"cmds":[{"fun":"f"}]}`,
	`{"cmds":[{"name":"a","fun":"f","args":{},"kwargs":[]}]}`,
	`{"cmds":[{"name":"a","fun":"f"}]} x`,
	`{"cmds":[{"name":"a","fun":"f"},]}`,
	`{"cmds":[{"name":"a","fun":"f"}],"id":"\u00e9\ud800"}`,
	`[]`, `null`, `"request"`, `{`, `{"cmds":[{"name":"a","fun":"f","args":[[[[[[1]]]]]]}]}`,
}

var readExecSeeds = []string{
	`{"cluster":"c1","id":"r1/a","fun":"f","args":[1,2],"kwargs":{"x":"y"},"deadline_ms":1700000000000,"attempt":"t1","timing":true}`,
	`{"cluster":"bad id","fun":"f"}`,
	`{"cluster":"c","fun":"a b","args":"x","timing":"yes"}`,
	`{"fun":"f","deadline_ms":9007199254740992}`,
	`{"cluster":"c","fun":"f","cluster":null}`,
	`{"cluster":"c","fun":"f","attempt":7,"id":["x"]}`,
	`[1]`,
}

var readExecReplySeeds = []string{
	`{"result":null}`, `{}`, `{"result":["hi",1,{"a":1.5}],"timing":{"queue_us":3,"run_us":40}}`,
	`{"error":null,"result":false}`,
	`{"error":{"code":"FUNCTION_ERROR","message":"boom","step":"a","node":"n","details":{"n":1}}}`,
	`{"error":{"message":"no code"}}`, `{"error":"boom"}`, `{"error":{"code":"X","step":1}}`,
	`{"error":{"code":"TEAPOT"},"timing":{"run_us":"x"}}`, `{"timing":[],"result":1}`,
	`{"result":1,"error":{"code":"TIMEOUT"},"error":null}`, `[]`,
}

var readResponseSeeds = []string{
	`{"id":"r1","results":{"a":1,"b":[true]},"trace":[{"step":"a","fun":"f","node":"n","attempt":1,"start_us":2,"queue_us":3,"run_us":4,"code":"OK"}],"trace_truncated":true}`,
	`{"id":"r1","results":{},"error":{"code":"NO_ROUTE","message":"m"},"errors":{"a":{"code":"TIMEOUT"},"b":{"code":"FUNCTION_ERROR","message":"x"}}}`,
	`{"plan":[{"name":"a","fun":"f","locs":["x"],"deps":[],"candidates":["n1"],"node":"n1"},{"name":"b","fun":"g","node":null,"routable":true}],"problems":[{"code":"NO_ROUTE","message":"m"}],"warnings":[{"step":"a","key":"k","message":"m","near":"n"}]}`,
	`{"plan":[{"name":"a"}],"problems":[null],"warnings":[{}]}`,
	`{"errors":{"b":"x","a":{"message":1},"c":{"code":"TIMEOUT"}}}`,
	`{"errors":{"a":"x","a":{"code":"TIMEOUT"}},"trace":{}}`,
	`{"results":[],"trace":[{"attempt":1.5}],"plan":[{"name":"a","fun":"f","routable":1,"locs":[1]}]}`,
	`{"id":1,"trace_truncated":"x","warnings":[1]}`,
	`"x"`,
}

// mpSeeds are MessagePack bodies no JSON text encodes to: keys that are
// integers or bin, a timestamp for a string, numbers in their longer
// forms, an extension that is no timestamp.
var mpSeeds = []string{
	"\x83\xa4cmds\x91\x82\xa4name\xa1a\xa3fun\xa1f\x01\xa1x\xc4\x02id\xa1z",
	"\x82\xa4cmds\x91\x82\xa4name\xa1a\xa3fun\xa1f\xa2id\xd6\xff\x00\x00\x00\x00",
	"\x82\xa4cmds\x91\x82\xa4name\xa1a\xa3fun\xa1f\xaatimeout_ms\xcf\xff\xff\xff\xff\xff\xff\xff\xff",
	"\x82\xa4cmds\x91\x82\xa4name\xa1a\xa3fun\xa1f\xaatimeout_ms\xcb\x3f\xf8\x00\x00\x00\x00\x00\x00",
	"\x82\xa4cmds\xdc\x00\x01\x82\xa4name\xa1a\xa3fun\xa1f\xa6result\xd6\x01\x00\x00\x00\x00",
	"\xde\x00\x02\xa6result\xc4\x01x\xa5error\xc0",
	"\x81\xa5error\x83\xa4code\xd9\x07TIMEOUT\xa7details\xc7\x0c\xff\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xa4step\xc4\x01s",
	"\x81\xa6errors\x82\xa1b\x81\xa4code\x01\xa1a\x81\xa4code\xa7TIMEOUT",
	"\x84\xa7cluster\xa1c\xa3fun\xa1f\xa4args\x91\xca\x3f\xc0\x00\x00\xabdeadline_ms\xd3\x00\x00\x01\x8b\xcf\xe5\x68\x00",
}

// fuzzRead seeds f with the JSON bodies, their MessagePack encodings and
// mpSeeds, and fuzzes check.
func fuzzRead(f *testing.F, seeds []string, check func(t *testing.T, c codec.Codec, data []byte)) {
	for _, s := range mpSeeds {
		f.Add([]byte(s), true)
	}
	for _, s := range seeds {
		f.Add([]byte(s), false)
		if v, err := codec.JSON.Decode([]byte(s)); err == nil {
			b, err := codec.MsgPack.Encode(v)
			require.NoError(f, err)
			f.Add(b, true)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte, mp bool) {
		c := codec.JSON
		if mp {
			c = codec.MsgPack
		}
		check(t, c, data)
	})
}

func FuzzReadRequest(f *testing.F) {
	fuzzRead(f, readRequestSeeds, func(t *testing.T, c codec.Codec, data []byte) {
		checkRead(t, c, data, schema.ReadRequest, schema.ParseRequest)
	})
}

func FuzzReadExecRequest(f *testing.F) {
	fuzzRead(f, readExecSeeds, func(t *testing.T, c codec.Codec, data []byte) {
		checkRead(t, c, data, schema.ReadExecRequest, schema.ParseExecRequest)
	})
}

func FuzzReadExecReply(f *testing.F) {
	fuzzRead(f, readExecReplySeeds, func(t *testing.T, c codec.Codec, data []byte) {
		checkRead(t, c, data, schema.ReadExecReply, schema.ParseExecReply)
	})
}

func FuzzReadResponse(f *testing.F) {
	fuzzRead(f, readResponseSeeds, func(t *testing.T, c codec.Codec, data []byte) {
		checkRead(t, c, data, schema.ReadResponse, schema.ParseResponse)
	})
}

// TestReadMatchesParse runs every seed through checkRead, in both codecs,
// and under a budget too small for most of them.
func TestReadMatchesParse(t *testing.T) {
	for _, s := range mpSeeds {
		checkRead(t, codec.MsgPack, []byte(s), schema.ReadRequest, schema.ParseRequest)
		checkRead(t, codec.MsgPack, []byte(s), schema.ReadExecRequest, schema.ParseExecRequest)
		checkRead(t, codec.MsgPack, []byte(s), schema.ReadExecReply, schema.ParseExecReply)
		checkRead(t, codec.MsgPack, []byte(s), schema.ReadResponse, schema.ParseResponse)
	}
	for _, s := range readGossipSeeds {
		for _, c := range []codec.Codec{codec.JSON, codec.MsgPack} {
			b := []byte(s)
			if c == codec.MsgPack {
				v, err := codec.JSON.Decode(b)
				require.NoError(t, err)
				b, err = codec.MsgPack.Encode(v)
				require.NoError(t, err)
			}
			checkRead(t, c, b, schema.ReadHello, schema.ParseHello)
			checkRead(t, c, b, schema.ReadHeartbeat, schema.ParseHeartbeat)
			checkRead(t, c, b, schema.ReadGoodbye, schema.ParseGoodbye)
		}
	}
	for _, seeds := range [][]string{readRequestSeeds, readExecSeeds, readExecReplySeeds, readResponseSeeds} {
		for _, s := range seeds {
			bodies := [][]byte{[]byte(s)}
			if v, err := codec.JSON.Decode([]byte(s)); err == nil {
				b, err := codec.MsgPack.Encode(v)
				require.NoError(t, err)
				bodies = append(bodies, b)
			}
			for i, b := range bodies {
				c := []codec.Codec{codec.JSON, codec.MsgPack}[i]
				checkRead(t, c, b, schema.ReadRequest, schema.ParseRequest)
				checkRead(t, c, b, schema.ReadExecRequest, schema.ParseExecRequest)
				checkRead(t, c, b, schema.ReadExecReply, schema.ParseExecReply)
				checkRead(t, c, b, schema.ReadResponse, schema.ParseResponse)
				for _, limit := range []int64{1, 200, 600} {
					checkReadLimit(t, c, b, limit, schema.ReadResponse, schema.ParseResponse)
				}
			}
		}
	}
}

func checkRead[T any](t *testing.T, c codec.Codec, data []byte, read func(schema.Reader) (T, error), parse func(any) (T, error)) {
	checkReadLimit(t, c, data, 1<<20, read, parse)
}

func checkReadLimit[T any](t *testing.T, c codec.Codec, data []byte, limit int64, read func(schema.Reader) (T, error), parse func(any) (T, error)) {
	t.Helper()
	tree, size, derr := codec.DecodeSized(c, data, limit)
	got, gotSize, err := codec.ReadSized(c, data, limit, read)
	require.Equal(t, size, gotSize, "size estimate of %q", data)
	if derr != nil {
		require.ErrorIs(t, err, codec.ErrDecode, "%q: the tree does not decode (%v); the reader gave %v", data, derr, err)
		require.Equal(t, errors.Is(derr, codec.ErrTooBig), errors.Is(err, codec.ErrTooBig), "%q: %v / %v", data, derr, err)
		return
	}
	want, perr := parse(tree)
	if perr != nil {
		require.Error(t, err, "%q: the tree does not parse (%v)", data, perr)
		we, ge := schema.AsError(perr), schema.AsError(err)
		require.Equal(t, we.Code, ge.Code, "%q", data)
		require.Equal(t, we.Message, ge.Message, "%q", data)
		require.Equal(t, we.Details, ge.Details, "%q", data)
		return
	}
	require.NoError(t, err, "%q", data)
	require.True(t, equalNaN(reflect.ValueOf(want), reflect.ValueOf(got)), "%q:\n%#v\n%#v", data, want, got)
}

// equalNaN is reflect.DeepEqual with NaN equal to NaN (MessagePack can
// carry one in a value).
func equalNaN(a, b reflect.Value) bool {
	if a.IsValid() != b.IsValid() || a.IsValid() && a.Type() != b.Type() {
		return false
	}
	if !a.IsValid() {
		return true
	}
	switch a.Kind() {
	case reflect.Float32, reflect.Float64:
		return a.Float() == b.Float() || math.IsNaN(a.Float()) && math.IsNaN(b.Float())
	case reflect.Pointer, reflect.Interface:
		if a.IsNil() || b.IsNil() {
			return a.IsNil() == b.IsNil()
		}
		return equalNaN(a.Elem(), b.Elem())
	case reflect.Slice:
		if a.IsNil() != b.IsNil() || a.Len() != b.Len() {
			return false
		}
		for i := range a.Len() {
			if !equalNaN(a.Index(i), b.Index(i)) {
				return false
			}
		}
		return true
	case reflect.Map:
		return equalMaps(a, b)
	case reflect.Struct:
		for i := range a.NumField() {
			if !equalNaN(a.Field(i), b.Field(i)) {
				return false
			}
		}
		return true
	}
	return reflect.DeepEqual(a.Interface(), b.Interface())
}

func equalMaps(a, b reflect.Value) bool {
	if a.IsNil() != b.IsNil() || a.Len() != b.Len() {
		return false
	}
	for it := a.MapRange(); it.Next(); {
		if bv := b.MapIndex(it.Key()); !bv.IsValid() || !equalNaN(it.Value(), bv) {
			return false
		}
	}
	return true
}

// BenchmarkHeartbeatDecode reads a heartbeat's JSON body three ways: the
// scanner made for it (schema.ReadHeartbeatJSON), the general reader over
// the bytes (ReadSized with schema.ReadHeartbeat), and the tree
// (DecodeSized, then ParseHeartbeat).
func BenchmarkHeartbeatDecode(b *testing.B) {
	body, err := codec.JSON.Encode(&schema.Heartbeat{Cluster: "default", Node: "node-00001", Incarnation: 1, Version: 1,
		Load: schema.Load{Inflight: 1, Limit: 256}})
	require.NoError(b, err)
	b.Run("scanner", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := schema.ReadHeartbeatJSON(body); !ok {
				b.Fatal("off the fast path")
			}
		}
	})
	b.Run("reader", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := codec.ReadSized(codec.JSON, body, codec.MaxDecoded, schema.ReadHeartbeat); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("alternating", func(b *testing.B) { // the first two, batch by batch
		var scan, read time.Duration
		const batch = 1000
		for b.Loop() {
			t0 := time.Now()
			for range batch {
				schema.ReadHeartbeatJSON(body)
			}
			t1 := time.Now()
			for range batch {
				_, _, _ = codec.ReadSized(codec.JSON, body, codec.MaxDecoded, schema.ReadHeartbeat)
			}
			scan, read = scan+t1.Sub(t0), read+time.Since(t1)
		}
		b.ReportMetric(float64(scan.Nanoseconds())/float64(b.N*batch), "scanner-ns/op")
		b.ReportMetric(float64(read.Nanoseconds())/float64(b.N*batch), "reader-ns/op")
	})
	b.Run("tree", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			tree, _, err := codec.DecodeSized(codec.JSON, body, codec.MaxDecoded)
			if err == nil {
				_, err = schema.ParseHeartbeat(tree)
			}
			if err != nil {
				b.Fatal(err)
			}
		}
	})
}

var readGossipSeeds = []string{
	`{"kind":"hello","cluster":"c","node":"n1","incarnation":3,"instance":"i","version":2,"funs":{"f":["gpu"],"g":null},"codecs":["application/json"],"bare":"application/msgpack","advertised_urls":["nats://a:4222"],"meta":{"zone":"z","n":1,"b":true},"proto":1,"idempotent":["f"],"retry_after_ms":{"f":10,"g":0}}`,
	`{"cluster":"c","node":"n1","incarnation":0,"version":-1,"funs":{"a.b":[1],"f":"x"},"codecs":[1,2],"meta":{"k":[1]},"retry_after_ms":{"f":-1,"g":null},"proto":99999999}`,
	`{"cluster":"c","node":"n1","incarnation":1,"version":0,"funs":[],"meta":{},"kind":"goodbye","advertised_urls":"x"}`,
	`{"cluster":"c","node":"n 1","incarnation":1,"version":1,"seq":5,"load":{"inflight":1,"limit":2}}`,
	`{"cluster":"c","node":"n1","incarnation":1.5,"version":1,"load":[]}`,
	`{"kind":"goodbye","cluster":"c","node":"n1","incarnation":1,"instance":"i"}`,
	`{"kind":"hello","cluster":"c","node":"n1","incarnation":9007199254740992}`,
	`{"cluster":"c","node":"n1","incarnation":1,"version":1,"funs":{"f":[],"g":[]},"retry":{"f":{"attempts":5,"initial_backoff_ms":100,"max_backoff_ms":800,"multiplier":2,"jitter":0.5},"g":{"attempts":1},"h":{"attempts":2}}}`,
	`{"cluster":"c","node":"n1","incarnation":1,"version":1,"funs":{"f":[]},"retry":{"f":{"attempts":0,"multiplier":"x","jitter":2},"a.b":{"attempts":2},"g":[]}}`,
	`{"cluster":"c","node":"n1","incarnation":1,"version":1,"retry":{"f":{"attempts":null,"initial_backoff_ms":5,"max_backoff_ms":1}}}`,
}

var readStatusSeeds = []string{
	`{"id":"r1","wait_ms":5000}`,
	`{"id":"","wait_ms":-1}`,
	`{"id":"r1","wait_ms":60001,"x":[1]}`,
	`{"id":"r1","status":"done","planner":"n2","steps_done":3,"steps":3,"result":{"a":1,"b":[1,"x"]},"errors":{"a":{"code":"TIMEOUT"}}}`,
	`{"id":"r1","status":"unknown","steps_done":0,"steps":0,"error":{"code":"STORE_UNAVAILABLE","message":"enable JetStream"}}`,
	`{"id":"r1","status":"sleeping","steps_done":"x","result":[],"errors":{"a":"x"},"error":1}`,
	`{"status":null,"planner":"` + strings.Repeat("p", 70) + `"}`,
}

// FuzzReadStatus is FuzzReadRequest for the status query and answer of
// durable requests.
func FuzzReadStatus(f *testing.F) {
	fuzzRead(f, readStatusSeeds, func(t *testing.T, c codec.Codec, data []byte) {
		checkRead(t, c, data, schema.ReadStatusRequest, schema.ParseStatusRequest)
		checkRead(t, c, data, schema.ReadStatus, schema.ParseStatus)
	})
}

// FuzzReadGossip is FuzzReadRequest for the gossip messages: hello,
// heartbeat and goodbye.
func FuzzReadGossip(f *testing.F) {
	fuzzRead(f, readGossipSeeds, func(t *testing.T, c codec.Codec, data []byte) {
		checkRead(t, c, data, schema.ReadHello, schema.ParseHello)
		checkRead(t, c, data, schema.ReadHeartbeat, schema.ParseHeartbeat)
		checkRead(t, c, data, schema.ReadGoodbye, schema.ParseGoodbye)
	})
}

// BenchmarkRequestDecode reads an rpc-json request (one command, one
// argument, one loc) from its bytes, by the Reader and by the tree, in
// both codecs.
func BenchmarkRequestDecode(b *testing.B) {
	body := []byte(`{"cmds":[{"name":"r","fun":"echo","args":["` + strings.Repeat("x", 64) + `"],"locs":["a"]}]}`)
	tree, err := codec.JSON.Decode(body)
	require.NoError(b, err)
	mp, err := codec.MsgPack.Encode(tree)
	require.NoError(b, err)
	for _, c := range []struct {
		name  string
		codec codec.Codec
		body  []byte
	}{{"json", codec.JSON, body}, {"msgpack", codec.MsgPack, mp}} {
		b.Run(c.name+"/reader", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := codec.ReadSized(c.codec, c.body, codec.MaxDecoded, schema.ReadRequest); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(c.name+"/tree", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				tree, _, err := codec.DecodeSized(c.codec, c.body, codec.MaxDecoded)
				if err == nil {
					_, err = schema.ParseRequest(tree)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
