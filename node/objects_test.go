package node_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/mpreg/mpreg/bus"
	"github.com/mpreg/mpreg/codec"
	"github.com/mpreg/mpreg/internal/testbytes"
	"github.com/mpreg/mpreg/internal/testcluster"
	"github.com/mpreg/mpreg/node"
)

// pattern returns size bytes where byte i is (i*31 + seed) mod 251.
var pattern = testbytes.Pattern

// patternReader reads the bytes of pattern(size, seed) without holding
// them.
type patternReader struct{ i, size, seed int }

func (p *patternReader) Read(b []byte) (int, error) {
	if p.i >= p.size {
		return 0, io.EOF
	}
	n := min(len(b), p.size-p.i)
	for k := range n {
		b[k] = byte(((p.i+k)*31 + p.seed) % 251)
	}
	p.i += n
	return n, nil
}

var hexSHA = testbytes.SHA256

// registerData registers the data functions of these tests on n, each
// also under a name with the node's id (make_a, …) for the tests that
// place steps by function.
func registerData(t testing.TB, n *node.Node) {
	reg := func(name string, f any, opts ...node.FuncOption) {
		require.NoError(t, n.Register(name, f, opts...))
	}
	reg("make", func(size, seed int) []byte { return pattern(size, seed) })
	reg("flip", func(b []byte) []byte {
		for i := range b { // in place: the input is the function's own
			b[i] ^= 0xff
		}
		return b
	})
	reg("digest", func(b []byte) string { return hexSHA(b) })
	reg("length", func(b []byte) int { return len(b) })
	reg("same", func(x any) any { return x })
	reg("bigmap", func(n int) map[string]any {
		return map[string]any{"text": strings.Repeat("é", n), "lit": map[string]any{"$obj": 1}}
	})
	reg("inspect", func(m map[string]any) map[string]any {
		return map[string]any{"len": len(m["text"].(string)), "lit": m["lit"]}
	})
	reg("keys", func(m map[string]any) string { return strings.Join(sortedKeys(m), ",") })
	reg("gen", func(size, seed int) *node.Blob { return node.NewBlob(&patternReader{size: size, seed: seed}, -1) })
	reg("sum", func(b *node.Blob) (map[string]any, error) {
		h := sha256.New()
		n, err := io.Copy(h, b)
		if err != nil {
			return nil, err
		}
		return map[string]any{"size": n, "sha256": hex.EncodeToString(h.Sum(nil)), "declared": b.Size()}, nil
	}, node.WithParams("data"))
}

// longRPC sends a JSON request to subject and decodes the reply, waiting
// up to two minutes: big values through JetStream on a loaded machine.
func longRPC(t testing.TB, nc *nats.Conn, subject, body string) map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	m, err := nc.RequestMsgWithContext(ctx, &nats.Msg{Subject: subject, Data: []byte(body), Header: jsonHeader()})
	require.NoError(t, err)
	tree, err := codec.JSON.Decode(m.Data)
	require.NoError(t, err)
	return tree.(map[string]any)
}

// traceOf returns the trace entries of a response by step name.
func traceOf(t testing.TB, resp map[string]any) map[string]map[string]any {
	t.Helper()
	l, ok := resp["trace"].([]any)
	require.True(t, ok, "no trace in %v", resp)
	out := map[string]map[string]any{}
	for _, e := range l {
		m := e.(map[string]any)
		out[m["step"].(string)] = m
	}
	return out
}

// fetched is the fetched_bytes of a trace entry (absent: 0).
func fetched(e map[string]any) int64 {
	n, _ := e["fetched_bytes"].(int64)
	return n
}

// jsNodes starts one node per id on the servers at urls (round robin),
// with registerData, each with loc "at-<id>", and waits until the first
// routes to every one of them.
func jsNodes(t *testing.T, urls []string, ids []string, edit func(*node.Config)) []*node.Node {
	t.Helper()
	var nodes []*node.Node
	for i, id := range ids {
		cfg := testcluster.NodeConfig(t, id, "at-"+id)
		// Moving tens of MiB on a loaded machine can hold heartbeats up
		// for longer than the test timings allow.
		cfg.Gossip.DeadAfter = 5 * time.Second
		if edit != nil {
			edit(&cfg)
		}
		nodes = append(nodes, testcluster.Node(t, urls[i%len(urls)], cfg, func(n *node.Node) { registerData(t, n) }))
	}
	for _, id := range ids {
		testcluster.WaitForRoute(t, nodes[0].Table(), "make", []string{"at-" + id}, id)
	}
	return nodes
}

// TestObjectsChainAcrossThreeServers: objectsChain with 8 MiB, quick
// enough under the race detector (which slows the servers' storage
// tenfold); TestLoadObjectsChain moves 50 MiB without it.
func TestObjectsChainAcrossThreeServers(t *testing.T) { objectsChain(t, 8<<20) }

// objectsChain: a value of size bytes made on one node passes by
// reference, through a JetStream cluster of three servers with an R3
// bucket, to a step on a second node that changes it, whose result a
// third node digests. Each consuming step fetched the value once, as the
// trace says; the planner held only references.
func objectsChain(t *testing.T, size int) {
	servers := testcluster.JetStreamCluster(t, 3)
	urls := []string{servers[0].ClientURL(), servers[1].ClientURL(), servers[2].ClientURL()}
	testcluster.ObjectBucket(t, urls[0], bus.ObjectBucket("", "default"), 3)
	jsNodes(t, urls, []string{"a", "b", "c"}, nil)
	nc := testcluster.Conn(t, urls[0])

	resp := longRPC(t, nc, "mpreg.default.node.a.rpc", fmt.Sprintf(`{"trace": true, "timeout_ms": 120000, "cmds": [
		{"name": "x", "fun": "make",   "args": [%d, 7], "locs": ["at-a"]},
		{"name": "y", "fun": "flip",   "args": ["x"],   "locs": ["at-b"]},
		{"name": "z", "fun": "digest", "args": ["y"],   "locs": ["at-c"]}]}`, size))
	require.Nil(t, resp["error"], "response %v", resp)
	want := pattern(size, 7)
	for i := range want {
		want[i] ^= 0xff
	}
	require.Equal(t, map[string]any{"z": hexSHA(want)}, resp["results"])
	tr := traceOf(t, resp)
	require.Equal(t, "a", tr["x"]["node"])
	require.Equal(t, "b", tr["y"]["node"])
	require.Equal(t, "c", tr["z"]["node"])
	for _, step := range []string{"x", "y", "z"} {
		t.Logf("step %s on %s: queue %dµs, run %dµs, fetched %d bytes", step, tr[step]["node"], tr[step]["queue_us"], tr[step]["run_us"], fetched(tr[step]))
	}
	require.Zero(t, fetched(tr["x"]))
	require.EqualValues(t, size, fetched(tr["y"]), "y fetched x's value once")
	require.EqualValues(t, size, fetched(tr["z"]), "z fetched y's value once")
}

// TestObjectsReferenceOnTheWire: a result over the inline limit comes back
// as a reference any NATS client reads with its object store API: the raw
// bytes, of the size and SHA-256 the reference names, with the producing
// node in the object's metadata. The inline limit is at most half the max
// payload, whatever the configuration says.
func TestObjectsReferenceOnTheWire(t *testing.T) {
	s := testcluster.Server(t, testcluster.WithJetStream(t.TempDir()))
	jsNodes(t, []string{s.ClientURL()}, []string{"a"}, func(c *node.Config) { c.Objects.InlineMax = 900 << 10 })
	nc := testcluster.Conn(t, s.ClientURL())

	resp := rpcJSON(t, nc, `{"cmds": [{"name": "x", "fun": "make", "args": [524288, 1]},
		{"name": "small", "fun": "make", "args": [524000, 1]}], "results": "all"}`)
	require.Nil(t, resp["error"], "response %v", resp)
	res := resp["results"].(map[string]any)
	require.IsType(t, "", res["small"], "512,000 bytes travel inline (base64 in JSON)")
	ref := res["x"].(map[string]any)["$obj"].(map[string]any)
	require.Equal(t, bus.ObjectBucket("mpreg", "default"), ref["bucket"])
	require.Equal(t, "mpreg-default", ref["bucket"])
	require.Equal(t, "bytes", ref["encoding"])
	require.EqualValues(t, 524288, ref["size"])
	require.Equal(t, hexSHA(pattern(524288, 1)), ref["sha256"])

	js, err := jetstream.New(nc)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	obs, err := js.ObjectStore(ctx, ref["bucket"].(string))
	require.NoError(t, err)
	data, err := obs.GetBytes(ctx, ref["name"].(string))
	require.NoError(t, err)
	require.Equal(t, pattern(524288, 1), data)
	info, err := obs.GetInfo(ctx, ref["name"].(string))
	require.NoError(t, err)
	require.Equal(t, "a", info.Metadata["mpreg-node"])
}

// TestObjectsStructuredValues: a big value that is not binary is stored
// in MessagePack, escaped, and reaches the next step whole; an object a
// NATS client stored as JSON is read too.
func TestObjectsStructuredValues(t *testing.T) {
	s := testcluster.Server(t, testcluster.WithJetStream(t.TempDir()))
	jsNodes(t, []string{s.ClientURL()}, []string{"a", "b"}, nil)
	nc := testcluster.Conn(t, s.ClientURL())

	resp := rpcJSON(t, nc, `{"results": "all", "trace": true, "cmds": [
		{"name": "m", "fun": "bigmap",  "args": [200000], "locs": ["at-a"]},
		{"name": "i", "fun": "inspect", "args": ["m"],    "locs": ["at-b"]}]}`)
	require.Nil(t, resp["error"], "response %v", resp)
	res := resp["results"].(map[string]any)
	require.Equal(t, "msgpack", res["m"].(map[string]any)["$obj"].(map[string]any)["encoding"])
	require.Equal(t, map[string]any{"len": int64(400000), "lit": map[string]any{"$lit": map[string]any{"$obj": int64(1)}}}, res["i"])
	require.Positive(t, fetched(traceOf(t, resp)["i"]))

	js, err := jetstream.New(nc)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	obs, err := js.ObjectStore(ctx, "mpreg-default")
	require.NoError(t, err)
	text := []byte(`{"a": [1, 2.5, {"$lit": {"$obj": 3}}]}`)
	_, err = obs.PutBytes(ctx, "from-a-nats-client.json", text)
	require.NoError(t, err)
	ref := fmt.Sprintf(`{"$obj": {"bucket": "mpreg-default", "name": "from-a-nats-client.json", "size": %d, "sha256": %q, "encoding": "json"}}`,
		len(text), hexSHA(text))
	resp = rpcJSON(t, nc, `{"cmds": [{"name": "x", "fun": "keys", "args": [`+ref+`], "locs": ["at-b"]},
		{"name": "y", "fun": "same", "args": [`+ref+`], "locs": ["at-a"]}], "results": "all"}`)
	require.Nil(t, resp["error"], "response %v", resp)
	require.Equal(t, "a", resp["results"].(map[string]any)["x"])
	require.Equal(t, map[string]any{"a": []any{int64(1), 2.5, map[string]any{"$lit": map[string]any{"$obj": int64(3)}}}},
		resp["results"].(map[string]any)["y"])
}

// TestObjectsLiteralsRoundTrip: maps whose only key is $obj or $lit,
// returned by a function, reach the next step (here and on another node)
// as they were, travel escaped on the wire, and a caller's escaped literal
// reaches the function unescaped.
func TestObjectsLiteralsRoundTrip(t *testing.T) {
	s := testcluster.Server(t, testcluster.WithJetStream(t.TempDir()))
	jsNodes(t, []string{s.ClientURL()}, []string{"a", "b"}, nil)
	nc := testcluster.Conn(t, s.ClientURL())

	lit := `{"$lit": {"$obj": {"bucket": "elsewhere", "name": "n", "size": 1, "sha256": "x", "encoding": "bytes"}}}`
	for _, locs := range [][2]string{{"at-a", "at-a"}, {"at-a", "at-b"}} {
		resp := longRPC(t, nc, "mpreg.default.node.a.rpc", fmt.Sprintf(`{"results": "all", "cmds": [
			{"name": "x", "fun": "same", "args": [[%s, {"$lit": {"$lit": 5}}, {"k": {"$lit": {"$obj": 1}}}]], "locs": [%q]},
			{"name": "y", "fun": "same", "args": ["x"], "locs": [%q]}]}`, lit, locs[0], locs[1]))
		require.Nil(t, resp["error"], "response %v", resp)
		res := resp["results"].(map[string]any)
		wire, err := codec.JSON.Decode([]byte(fmt.Sprintf(`[%s, {"$lit": {"$lit": 5}}, {"k": {"$lit": {"$obj": 1}}}]`, lit)))
		require.NoError(t, err)
		require.Equal(t, wire, res["x"], "escaped on the wire as the caller sent it")
		require.Equal(t, wire, res["y"], "unchanged through a second step on %s", locs[1])
	}
	// What the function saw: the literal maps themselves.
	resp := rpcJSON(t, nc, `{"cmds": [
		{"name": "x", "fun": "keys", "args": [{"$lit": {"$obj": 1}}], "locs": ["at-b"]},
		{"name": "y", "fun": "keys", "args": [{"$lit": {"$lit": {"$lit": {"$obj": 1}}}}], "locs": ["at-a"]},
		{"name": "z", "fun": "keys", "args": [{"$obj": 1, "other": 2}]}]}`)
	require.Nil(t, resp["error"], "response %v", resp)
	require.Equal(t, map[string]any{"x": "$obj", "y": "$lit", "z": "$obj,other"}, resp["results"])
}

// TestObjectsCacheHit: a step that runs where its input was made reads it
// from the node's cache (fetched_bytes absent); one on another node
// fetches it.
func TestObjectsCacheHit(t *testing.T) {
	s := testcluster.Server(t, testcluster.WithJetStream(t.TempDir()))
	jsNodes(t, []string{s.ClientURL()}, []string{"a", "b"}, nil)
	nc := testcluster.Conn(t, s.ClientURL())
	const size = 3 << 20
	resp := longRPC(t, nc, "mpreg.default.node.a.rpc", fmt.Sprintf(`{"trace": true, "cmds": [
		{"name": "x",    "fun": "make",   "args": [%d, 3], "locs": ["at-a"]},
		{"name": "here", "fun": "flip",   "args": ["x"],   "locs": ["at-a"]},
		{"name": "away", "fun": "digest", "args": ["x"],   "locs": ["at-b"]},
		{"name": "back", "fun": "digest", "args": ["x"],   "locs": ["at-a"]}]}`, size))
	require.Nil(t, resp["error"], "response %v", resp)
	res := resp["results"].(map[string]any)
	require.Equal(t, hexSHA(pattern(size, 3)), res["away"])
	require.Equal(t, hexSHA(pattern(size, 3)), res["back"], "flip changed its own copy, not the cache's")
	tr := traceOf(t, resp)
	require.Zero(t, fetched(tr["here"]), "made on a, run on a: no fetch")
	require.NotContains(t, tr["here"], "fetched_bytes")
	require.Zero(t, fetched(tr["back"]))
	require.EqualValues(t, size, fetched(tr["away"]))
}

// TestObjectsBlobStreams: a function that returns a *node.Blob has it
// streamed into the bucket (or inline when small), and one that takes a
// *node.Blob reads the object as it is fetched, by position or by name.
func TestObjectsBlobStreams(t *testing.T) {
	s := testcluster.Server(t, testcluster.WithJetStream(t.TempDir()))
	jsNodes(t, []string{s.ClientURL()}, []string{"a", "b"}, nil)
	nc := testcluster.Conn(t, s.ClientURL())
	const size = 5<<20 + 3
	want := map[string]any{"size": int64(size), "sha256": hexSHA(pattern(size, 9)), "declared": int64(size)}
	resp := longRPC(t, nc, "mpreg.default.node.a.rpc", fmt.Sprintf(`{"trace": true, "results": "all", "cmds": [
		{"name": "g",  "fun": "gen", "args": [%d, 9], "locs": ["at-a"]},
		{"name": "s1", "fun": "sum", "args": ["g"], "locs": ["at-b"]},
		{"name": "s2", "fun": "sum", "kwargs": {"data": "g"}, "locs": ["at-a"]},
		{"name": "tiny", "fun": "gen", "args": [10, 9], "locs": ["at-a"]},
		{"name": "s3", "fun": "sum", "args": ["tiny"], "locs": ["at-b"]}]}`, size))
	require.Nil(t, resp["error"], "response %v", resp)
	res := resp["results"].(map[string]any)
	require.Equal(t, "bytes", res["g"].(map[string]any)["$obj"].(map[string]any)["encoding"])
	require.Equal(t, want, res["s1"])
	require.Equal(t, want, res["s2"])
	require.IsType(t, "", res["tiny"], "10 bytes travel inline")
	require.Equal(t, map[string]any{"size": int64(10), "sha256": hexSHA(pattern(10, 9)), "declared": int64(10)}, res["s3"])
	tr := traceOf(t, resp)
	require.EqualValues(t, size, fetched(tr["s1"]))
	require.EqualValues(t, size, fetched(tr["s2"]), "a streamed result is not kept in the cache")
}

// TestObjectsWithoutJetStream: with no JetStream a result over the max
// payload is PAYLOAD_TOO_LARGE saying to enable JetStream; one under it
// travels inline as before.
func TestObjectsWithoutJetStream(t *testing.T) {
	s := testcluster.Server(t)
	jsNodes(t, []string{s.ClientURL()}, []string{"a"}, nil)
	nc := testcluster.Conn(t, s.ClientURL())
	resp := rpcJSON(t, nc, `{"cmds": [{"name": "x", "fun": "make", "args": [600000, 1]}]}`)
	require.Nil(t, resp["error"], "600,000 bytes fit the max payload: inline as before")
	require.IsType(t, "", resp["results"].(map[string]any)["x"])

	resp = rpcJSON(t, nc, `{"cmds": [{"name": "x", "fun": "make", "args": [2000000, 1]}]}`)
	e := wireError(t, resp)
	require.Equal(t, "PAYLOAD_TOO_LARGE", e["code"])
	require.Contains(t, e["message"], "enable it")
	require.Contains(t, e["message"], "JetStream")
	require.Equal(t, "max_payload", details(t, e)["limit"])
}

// objRef is the JSON of a reference.
func objRef(bucket, name string, size int, sha string) string {
	return fmt.Sprintf(`{"$obj": {"bucket": %q, "name": %q, "size": %d, "sha256": %q, "encoding": "bytes"}}`, bucket, name, size, sha)
}

// TestObjectsErrors: every way a reference can be bad gets its code, and
// the node keeps serving.
func TestObjectsErrors(t *testing.T) {
	s := testcluster.Server(t, testcluster.WithJetStream(t.TempDir()))
	jsNodes(t, []string{s.ClientURL()}, []string{"a", "b"}, func(c *node.Config) { c.Objects.MaxBytes = 4 << 20 })
	nc := testcluster.Conn(t, s.ClientURL())

	resp := rpcJSON(t, nc, `{"cmds": [{"name": "x", "fun": "make", "args": [1000000, 2], "locs": ["at-a"]}]}`)
	require.Nil(t, resp["error"], "response %v", resp)
	ref := resp["results"].(map[string]any)["x"].(map[string]any)["$obj"].(map[string]any)
	name, sha := ref["name"].(string), ref["sha256"].(string)
	other := strings.Repeat("0", 64)

	for _, c := range []struct {
		what, arg, code string
		msg             []string
		details         map[string]any
	}{
		{"missing", objRef("mpreg-default", "nope", 10, other), "INVALID_ARGUMENT",
			[]string{"mpreg-default/nope", "does not exist"}, map[string]any{"name": "nope"}},
		{"another bucket", objRef("secrets", name, 1000000, sha), "PERMISSION_DENIED",
			[]string{"secrets"}, map[string]any{"bucket": "secrets"}},
		{"digest mismatch", objRef("mpreg-default", name, 1000000, other), "INTERNAL",
			[]string{name, "stored by node a"}, map[string]any{"stored_by": "a", "name": name}},
		{"size mismatch", objRef("mpreg-default", name, 999, sha), "INTERNAL",
			[]string{name, "stored by node a"}, nil},
		{"over max_object_bytes", objRef("mpreg-default", name, 5<<20, sha), "PAYLOAD_TOO_LARGE",
			[]string{"max_object_bytes"}, map[string]any{"limit": "max_object_bytes", "max": int64(4 << 20)}},
		{"malformed", `{"$obj": {"bucket": "mpreg-default"}}`, "INVALID_ARGUMENT", []string{"malformed reference"}, nil},
	} {
		for _, at := range []string{"at-a", "at-b"} { // cached on a, fetched on b
			resp := rpcJSON(t, nc, fmt.Sprintf(`{"cmds": [{"name": "x", "fun": "length", "args": [%s], "locs": [%q]}]}`, c.arg, at))
			e := wireError(t, resp)
			require.Equal(t, c.code, e["code"], "%s on %s: %v", c.what, at, e)
			for _, m := range c.msg {
				require.Contains(t, e["message"], m, "%s on %s", c.what, at)
			}
			for k, v := range c.details {
				require.Equal(t, v, details(t, e)[k], "%s on %s: details.%s", c.what, at, k)
			}
		}
	}

	resp = rpcJSON(t, nc, `{"cmds": [{"name": "x", "fun": "make", "args": [5000000, 2]}]}`)
	e := wireError(t, resp)
	require.Equal(t, "PAYLOAD_TOO_LARGE", e["code"])
	require.Equal(t, "max_object_bytes", details(t, e)["limit"])
	resp = rpcJSON(t, nc, `{"cmds": [{"name": "x", "fun": "gen", "args": [5000000, 2]}]}`)
	e = wireError(t, resp)
	require.Equal(t, "PAYLOAD_TOO_LARGE", e["code"], "a streamed result too: %v", e)
	require.Equal(t, "max_object_bytes", details(t, e)["limit"])

	resp = rpcJSON(t, nc, fmt.Sprintf(`{"cmds": [{"name": "x", "fun": "length", "args": [%s]}]}`, objRef("mpreg-default", name, 1000000, sha)))
	require.Nil(t, resp["error"], "still serving: %v", resp)
	require.Equal(t, map[string]any{"x": int64(1000000)}, resp["results"])
}
