package node_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/mpreg/mpreg/client"
	"github.com/mpreg/mpreg/codec"
	"github.com/mpreg/mpreg/internal/testcluster"
	"github.com/mpreg/mpreg/internal/testwait"
	"github.com/mpreg/mpreg/node"
	"github.com/mpreg/mpreg/schema"
)

// blobSize is a result of which one fits a reply (max payload 1 MiB) and
// two do not.
const blobSize = 565 << 10

// Two steps pinned to b return blobSize bytes each, and steps on a read
// both (one each: a function's arguments must fit a message too). Planned
// by a with delegation on, the sub-request's reply cannot
// hold both results in one message: it comes in parts, and the request
// succeeds as it does when b plans it or without delegation.
func TestDelegatedResultsLargerThanAMessage(t *testing.T) {
	s := testcluster.Server(t)
	a := testcluster.Node(t, s.ClientURL(), testcluster.NodeConfig(t, "a", "site-a"), func(n *node.Node) {
		require.NoError(t, n.Register("size", func(x string) int64 { return int64(len(x)) }))
		require.NoError(t, n.Register("add", func(x, y int64) int64 { return x + y }))
	})
	b := testcluster.Node(t, s.ClientURL(), testcluster.NodeConfig(t, "b", "site-b"), func(n *node.Node) {
		require.NoError(t, n.Register("seed", func() string { return "xy" }))
		require.NoError(t, n.Register("blob", func(s string, n int64) string { return strings.Repeat(s, int(n)) }))
	})
	testcluster.WaitForRoute(t, a.Table(), "blob", []string{"site-b"}, "b")
	testcluster.WaitForRoute(t, b.Table(), "size", []string{"site-a"}, "a")
	nc := testcluster.Conn(t, s.ClientURL())
	body := fmt.Sprintf(`{"id": "big", "cmds": [
		{"name": "s", "fun": "seed", "locs": ["site-b"]},
		{"name": "x1", "fun": "blob", "args": ["s", %d], "locs": ["site-b"]},
		{"name": "x2", "fun": "blob", "args": ["s", %d], "locs": ["site-b"]},
		{"name": "l1", "fun": "size", "args": ["x1"], "locs": ["site-a"]},
		{"name": "l2", "fun": "size", "args": ["x2"], "locs": ["site-a"]},
		{"name": "t", "fun": "add", "args": ["l1", "l2"], "locs": ["site-a"]}]}`, blobSize/2, blobSize/2)
	for _, planner := range []string{"a", "b"} {
		before := b.Stats()
		resp := decodeAs(t, request(t, nc, "mpreg.default.node."+planner+".rpc", []byte(body), jsonHeader()), codec.JSONType)
		require.Nil(t, resp["error"], "planned by %s", planner)
		require.Equal(t, map[string]any{"t": int64(2 * blobSize)}, resp["results"], "planned by %s", planner)
		if planner == "a" {
			require.Equal(t, int64(1), b.Stats().Requests-before.Requests, "the steps on b went there in one request")
			require.Equal(t, int64(3), b.Stats().Steps-before.Steps, "each ran once")
		}
	}
}

// 1,000 steps whose results fit one reply, with trace on: the trace does
// not fit with them, so it is cut and says so; every result is there.
func TestTraceCutBeforeResults(t *testing.T) {
	s := testcluster.Server(t)
	testcluster.Node(t, s.ClientURL(), testcluster.NodeConfig(t, "a"), func(n *node.Node) {
		require.NoError(t, n.Register("pad", func(i int64) string { return fmt.Sprintf("%0990d", i) }))
	})
	nc := testcluster.Conn(t, s.ClientURL())
	var cmds []string
	for i := range 1000 {
		cmds = append(cmds, fmt.Sprintf(`{"name": "p%d", "fun": "pad", "args": [%d]}`, i, i))
	}
	for _, tc := range []struct {
		trace bool
		reply string
	}{{false, codec.JSONType}, {true, codec.JSONType}, {true, codec.MsgPackType}} {
		trace := tc.trace
		body := fmt.Sprintf(`{"trace": %v, "cmds": [%s]}`, trace, strings.Join(cmds, ","))
		hdr := nats.Header{"Content-Type": []string{codec.JSONType}, "Accept": []string{tc.reply}}
		resp := decodeAs(t, request(t, nc, rpcSubject, []byte(body), hdr), tc.reply)
		require.Nil(t, resp["error"], "trace %v, %s", trace, tc.reply)
		results := resp["results"].(map[string]any)
		require.Len(t, results, 1000)
		require.Equal(t, fmt.Sprintf("%0990d", 999), results["p999"])
		if !trace {
			require.NotContains(t, resp, "trace_truncated")
			continue
		}
		require.Equal(t, true, resp["trace_truncated"])
		entries := resp["trace"].([]any)
		require.NotEmpty(t, entries)
		require.Less(t, len(entries), 1000)
	}

	// Through the Go client, typed.
	req := &schema.Request{Trace: true}
	for i := range 1000 {
		req.Cmds = append(req.Cmds, schema.Command{Name: fmt.Sprintf("p%d", i), Fun: "pad", Args: []any{int64(i)}})
	}
	cl := testcluster.Client(t, s.ClientURL(), client.Config{NoFollow: true})
	resp, err := cl.Run(context.Background(), req)
	require.NoError(t, err)
	require.Len(t, resp.Results, 1000)
	require.True(t, resp.TraceTruncated)
	require.NotEmpty(t, resp.Trace)
	require.Less(t, len(resp.Trace), 1000)
}

// A caller that asks for split_results gets results that do not fit one
// message in part events, then the response: each result in exactly one
// of them. Without it the response is PAYLOAD_TOO_LARGE as before, and
// keeps its trace (all of it fits), which then does not say it was cut.
func TestSplitResultsOnTheWire(t *testing.T) {
	s := testcluster.Server(t)
	testcluster.Node(t, s.ClientURL(), testcluster.NodeConfig(t, "a"), func(n *node.Node) {
		require.NoError(t, n.Register("blob", func(s string, n int64) string { return strings.Repeat(s, int(n)) }))
	})
	nc := testcluster.Conn(t, s.ClientURL())
	body := func(split bool) []byte {
		return []byte(fmt.Sprintf(`{"id": "sp", "trace": true, "split_results": %v, "cmds": [
			{"name": "x1", "fun": "blob", "args": ["a", %d]},
			{"name": "x2", "fun": "blob", "args": ["b", %d]},
			{"name": "x3", "fun": "blob", "args": ["c", 10]}]}`, split, blobSize, blobSize))
	}

	inbox := nc.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	require.NoError(t, err)
	require.NoError(t, nc.PublishMsg(&nats.Msg{Subject: rpcSubject, Reply: inbox, Data: body(true), Header: jsonHeader()}))
	results := map[string]any{}
	var events []string
	for {
		m, err := sub.NextMsg(bound)
		require.NoError(t, err)
		events = append(events, m.Header.Get(schema.HeaderEvent))
		resp := decodeAs(t, m, codec.JSONType)
		require.Equal(t, "sp", resp["id"])
		for name, v := range resp["results"].(map[string]any) {
			require.NotContains(t, results, name, "a result sent twice")
			results[name] = v
		}
		if events[len(events)-1] != schema.EventPart {
			require.Nil(t, resp["error"])
			require.Len(t, resp["trace"], 3, "the response keeps the whole trace")
			require.NotContains(t, resp, "trace_truncated")
			break
		}
		require.NotContains(t, resp, "trace", "a part holds results only")
	}
	require.Equal(t, []string{schema.EventPart, schema.EventPart, schema.EventResult}, events)
	require.Equal(t, map[string]any{"x1": strings.Repeat("a", blobSize), "x2": strings.Repeat("b", blobSize),
		"x3": strings.Repeat("c", 10)}, results)

	resp := decodeAs(t, request(t, nc, rpcSubject, body(false), jsonHeader()), codec.JSONType)
	require.Equal(t, "PAYLOAD_TOO_LARGE", wireError(t, resp)["code"])
	require.Empty(t, resp["results"])
	require.Len(t, resp["trace"], 3, "the results are dropped, not the trace")
	require.NotContains(t, resp, "trace_truncated")

	// The Go client takes the parts when its request asks for them.
	cl := testcluster.Client(t, s.ClientURL(), client.Config{NoFollow: true})
	req := &schema.Request{Cmds: []schema.Command{
		{Name: "x1", Fun: "blob", Args: []any{"a", int64(blobSize)}},
		{Name: "x2", Fun: "blob", Args: []any{"b", int64(blobSize)}}}}
	_, err = cl.Run(context.Background(), req)
	requireCode(t, err, schema.CodePayloadTooLarge)
	req.SplitResults = true
	r, err := cl.Run(context.Background(), req)
	require.NoError(t, err)
	require.Equal(t, map[string]any{"x1": strings.Repeat("a", blobSize), "x2": strings.Repeat("b", blobSize)}, r.Results)
}

// A delegate that answers success without the results it was asked for
// (results: {}) fails the request with INTERNAL naming it; no step reads a
// null in their place.
func TestDelegateWithoutResults(t *testing.T) {
	srv := testcluster.Server(t)
	sized := make(chan struct{}, 1)
	n1 := testcluster.Node(t, srv.ClientURL(), testcluster.NodeConfig(t, "n1"), func(n *node.Node) {
		require.NoError(t, n.Register("size", func(_ any) int64 { sized <- struct{}{}; return 0 }))
	})
	f := newFake(t, srv.ClientURL(), "fake-1", map[string][]string{"blob": {"at-fake"}, "size": {"at-fake"}}, nil)
	rpcs := make(chan map[string]any, 1)
	sub, err := f.nc.Subscribe("mpreg.default.node.fake-1.rpc", func(m *nats.Msg) {
		c, ok := codec.ByType(m.Header.Get("Content-Type"))
		require.True(t, ok)
		tree, err := c.Decode(m.Data)
		require.NoError(t, err)
		req := tree.(map[string]any)
		rpcs <- req
		out := nats.NewMsg(m.Reply)
		out.Header.Set("Content-Type", codec.JSONType)
		out.Data = mustJSON(t, map[string]any{"id": req["id"], "results": map[string]any{}})
		_ = m.RespondMsg(out)
	})
	require.NoError(t, err)
	defer func() { _ = sub.Unsubscribe() }()
	require.NoError(t, f.nc.Flush())
	testcluster.WaitForRoute(t, n1.Table(), "blob", []string{"at-fake"}, "fake-1")
	caller := rawConn(t, srv.ClientURL())

	resp := decodeAs(t, request(t, caller, "mpreg.default.node.n1.rpc", []byte(`{"cmds": [
		{"name": "b", "fun": "blob", "args": [3], "locs": ["at-fake"]},
		{"name": "s", "fun": "size", "args": ["b"], "locs": ["at-fake"]},
		{"name": "z", "fun": "size", "args": ["s"]}]}`), jsonHeader()), codec.JSONType)
	sent := testwait.Recv(t, rpcs, "the delegated sub-request")
	require.Len(t, sent["cmds"], 2, "b and s went to fake-1 in one request")
	e := wireError(t, resp)
	require.Equal(t, "INTERNAL", e["code"], "%v", resp)
	require.Equal(t, "fake-1", e["node"])
	require.Equal(t, "s", e["step"])
	require.Contains(t, e["message"], "fake-1")
	require.Empty(t, sized, "z never ran on a null")
}
