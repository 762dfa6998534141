package node_test

// docs/PROTOCOL.md §6 (exec), §7 (info, gossip.sync, foreign clusters) and §1
// (cluster ids), over raw NATS.

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/mpreg/mpreg/codec"
	"github.com/mpreg/mpreg/internal/testcluster"
	"github.com/mpreg/mpreg/internal/testwait"
	"github.com/mpreg/mpreg/node"
)

func TestExecSubject(t *testing.T) {
	srv := testcluster.Server(t)
	b := newBlocker()
	defer b.Release()
	n := testcluster.Node(t, srv.ClientURL(), testcluster.NodeConfig(t, "n1"), func(n *node.Node) {
		registerStd(n)
		require.NoError(t, n.Register("block", b.Fn))
	})
	nc := testcluster.Conn(t, srv.ClientURL())
	exec := func(body map[string]any) map[string]any { return execJSON(t, nc, "n1", body) }

	t.Run("result", func(t *testing.T) {
		before := n.Stats()
		resp := exec(map[string]any{"cluster": "default", "id": "r1/s", "fun": "add", "args": []any{40, 2}, "kwargs": map[string]any{}})
		require.Equal(t, map[string]any{"result": int64(42)}, resp)
		after := n.Stats()
		require.Equal(t, before.Steps+1, after.Steps)
		require.Equal(t, before.Requests, after.Requests, "exec is not an rpc request")
	})
	t.Run("kwargs and a future deadline", func(t *testing.T) {
		resp := exec(map[string]any{"cluster": "default", "id": "r1/s", "fun": "add", "kwargs": map[string]any{"a": 1, "b": 2},
			"deadline_ms": time.Now().Add(5 * time.Second).UnixMilli(), "future_key": true})
		require.Equal(t, map[string]any{"result": int64(3)}, resp)
	})
	t.Run("result key present when null", func(t *testing.T) {
		m := request(t, nc, execSubject("n1"), []byte(`{"cluster":"default","id":"r/s","fun":"nothing","args":[],"kwargs":{}}`), jsonHeader())
		require.JSONEq(t, `{"result": null}`, string(m.Data))
		resp := decodeAs(t, m, codec.JSONType)
		v, ok := resp["result"]
		require.True(t, ok)
		require.Nil(t, v)
	})
	t.Run("error object", func(t *testing.T) {
		resp := exec(map[string]any{"cluster": "default", "id": "r/s", "fun": "fail", "args": []any{"nope"}, "kwargs": map[string]any{}})
		require.Equal(t, []string{"error"}, sortedKeys(resp))
		e := wireError(t, resp)
		require.Equal(t, "FUNCTION_ERROR", e["code"])
		require.Equal(t, "nope", e["message"])
	})
	t.Run("function not offered", func(t *testing.T) {
		resp := exec(map[string]any{"cluster": "default", "id": "r/s", "fun": "elsewhere", "args": []any{}, "kwargs": map[string]any{}})
		e := wireError(t, resp)
		require.Equal(t, "NO_ROUTE", e["code"])
		require.Equal(t, "elsewhere", details(t, e)["fun"])
	})
	t.Run("missing cluster", func(t *testing.T) {
		resp := exec(map[string]any{"id": "r/s", "fun": "add", "args": []any{1, 2}})
		e := wireError(t, resp)
		require.Equal(t, "INVALID_REQUEST", e["code"])
		require.Equal(t, "cluster", details(t, e)["key"])
	})
	t.Run("args of the wrong type", func(t *testing.T) {
		resp := exec(map[string]any{"cluster": "default", "fun": "add", "args": map[string]any{}})
		require.Equal(t, "args", details(t, wireError(t, resp))["key"])
	})
	t.Run("another cluster is dropped", func(t *testing.T) {
		before := n.Stats().Foreign
		data, err := codec.JSON.Encode(map[string]any{"cluster": "other", "id": "r/s", "fun": "add", "args": []any{1, 2}, "kwargs": map[string]any{}})
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err = nc.RequestMsgWithContext(ctx, &nats.Msg{Subject: execSubject("n1"), Data: data, Header: jsonHeader()})
		require.ErrorIs(t, err, context.DeadlineExceeded, "no reply at all")
		require.Less(t, time.Since(start), 2*time.Second)
		testcluster.WaitFor(t, "the foreign exec to be counted", func() error {
			if n.Stats().Foreign <= before {
				return errors.New("Foreign not increased")
			}
			return nil
		})
	})
	t.Run("deadline in the past", func(t *testing.T) {
		for i := range 20 {
			resp := exec(map[string]any{"cluster": "default", "id": "r/s", "fun": "add", "args": []any{1, 2}, "kwargs": map[string]any{},
				"deadline_ms": time.Now().Add(-time.Second).UnixMilli()})
			require.Equal(t, "TIMEOUT", wireError(t, resp)["code"], "try %d: %v", i, resp)
		}
	})
	t.Run("deadline passes while running", func(t *testing.T) {
		start := time.Now()
		resp := exec(map[string]any{"cluster": "default", "id": "r/s", "fun": "block", "args": []any{"d"}, "kwargs": map[string]any{},
			"deadline_ms": time.Now().Add(150 * time.Millisecond).UnixMilli()})
		require.Equal(t, "TIMEOUT", wireError(t, resp)["code"])
		require.Less(t, time.Since(start), 3*time.Second)
		require.Equal(t, "d", testwait.Recv(t, b.started, "the step to start"))
		require.ErrorIs(t, testwait.Recv(t, b.cancelled, "the step's context to end"), context.DeadlineExceeded)
	})
}

func TestInfoSubject(t *testing.T) {
	srv := testcluster.Server(t)
	n := testcluster.Node(t, srv.ClientURL(), testcluster.NodeConfig(t, "n1", "zone-b", "ssd"), func(n *node.Node) {
		require.NoError(t, n.Register("predict", func(x float64) float64 { return x }, node.WithLocs("model-a", "gpu")))
		require.NoError(t, n.Register("shared", func() {}, node.WithLocs("ssd")))
	})
	nc := testcluster.Conn(t, srv.ClientURL())

	h := decodeAs(t, request(t, nc, infoSubject("n1"), nil, nil), codec.JSONType)
	require.Equal(t, "default", h["cluster"])
	require.Equal(t, "n1", h["node"])
	require.Equal(t, int64(1), h["proto"])
	inc, ok := h["incarnation"].(int64)
	require.True(t, ok, "incarnation is an integer: %#v", h["incarnation"])
	require.InDelta(t, time.Now().UnixMilli(), inc, float64(time.Minute.Milliseconds()), "start time in unix ms")
	require.Less(t, inc, int64(1)<<53)
	ver, ok := h["version"].(int64)
	require.True(t, ok)
	require.Positive(t, ver)
	require.Equal(t, map[string]any{
		"echo":    []any{"ssd", "zone-b"},
		"echos":   []any{"ssd", "zone-b"},
		"predict": []any{"gpu", "model-a", "ssd", "zone-b"},
		"shared":  []any{"ssd", "zone-b"},
	}, h["funs"], "effective locs: node locs plus the function's")
	require.Equal(t, []any{codec.MsgPackType, codec.JSONType}, h["codecs"])
	urls, ok := h["advertised_urls"].([]any)
	require.True(t, ok)
	require.NotEmpty(t, urls)
	meta, ok := h["meta"].(map[string]any)
	require.True(t, ok)
	require.Equal(t, node.Version, meta["mpreg"])

	// The same hello answers gossip.sync.
	require.NoError(t, n.Register("later", func() {}))
	h2 := decodeAs(t, request(t, nc, infoSubject("n1"), nil, nil), codec.JSONType)
	require.Greater(t, h2["version"], ver, "a change bumps the version")
	require.Equal(t, inc, h2["incarnation"], "the incarnation is fixed for the process's life")
	require.Contains(t, h2["funs"], "later")
}

func TestGossipSyncCollectsEveryHello(t *testing.T) {
	srv := testcluster.Server(t)
	ids := []string{"s1", "s2", "s3"}
	for _, id := range ids {
		testcluster.Node(t, srv.ClientURL(), testcluster.NodeConfig(t, id), nil)
	}
	nc := testcluster.Conn(t, srv.ClientURL())

	inbox := nc.NewRespInbox()
	sub, err := nc.SubscribeSync(inbox)
	require.NoError(t, err)
	defer func() { _ = sub.Unsubscribe() }()
	require.NoError(t, nc.PublishRequest(syncSubject, inbox, nil))
	count := map[string]int{}
	for {
		m, err := sub.NextMsg(300 * time.Millisecond) // the quiet period
		if errors.Is(err, nats.ErrTimeout) {
			break
		}
		require.NoError(t, err)
		h := decodeAs(t, m, codec.JSONType)
		require.Equal(t, "default", h["cluster"])
		count[h["node"].(string)]++
	}
	require.Equal(t, map[string]int{"s1": 1, "s2": 1, "s3": 1}, count, "one hello per node")
}

// TestForeignGossipIgnored: gossip naming another cluster on this cluster's
// subjects is dropped and counted.
func TestForeignGossipIgnored(t *testing.T) {
	srv := testcluster.Server(t)
	n := testcluster.Node(t, srv.ClientURL(), testcluster.NodeConfig(t, "n1"), nil)
	nc := testcluster.Conn(t, srv.ClientURL())
	before := n.Stats().Foreign

	hello := func(cluster, id string) []byte {
		data, err := codec.JSON.Encode(map[string]any{"cluster": cluster, "node": id, "incarnation": time.Now().UnixMilli(), "version": 1,
			"funs": map[string]any{"alien": []any{}}, "codecs": []any{codec.JSONType}, "advertised_urls": []any{}, "proto": 1})
		require.NoError(t, err)
		return data
	}
	pub := func(subject string, data []byte) {
		require.NoError(t, nc.PublishMsg(&nats.Msg{Subject: subject, Data: data, Header: jsonHeader()}))
	}
	pub("mpreg.default.gossip.hello", hello("other", "intruder"))
	hb, err := codec.JSON.Encode(map[string]any{"cluster": "other", "node": "intruder", "incarnation": 1, "version": 1, "seq": 1,
		"load": map[string]any{"inflight": 0, "limit": 1}})
	require.NoError(t, err)
	pub("mpreg.default.gossip.heartbeat", hb)
	bye, err := codec.JSON.Encode(map[string]any{"cluster": "other", "node": "n1", "incarnation": 1})
	require.NoError(t, err)
	pub("mpreg.default.gossip.goodbye", bye)
	// A well-formed hello from this cluster, sent last on the same
	// connection, marks when the others have been processed (once the
	// node has asked it for its hello, as it does every new node).
	friend := hello("default", "friend")
	sub, err := nc.Subscribe(infoSubject("friend"), func(m *nats.Msg) {
		_ = m.RespondMsg(&nats.Msg{Data: friend, Header: jsonHeader()})
	})
	require.NoError(t, err)
	defer func() { _ = sub.Unsubscribe() }()
	require.NoError(t, nc.Flush())
	pub("mpreg.default.gossip.hello", friend)

	testcluster.WaitForRoute(t, n.Table(), "alien", nil, "friend")
	_, ok := n.Table().Get("intruder")
	require.False(t, ok, "a hello from another cluster is not in the table")
	require.Equal(t, []string{"friend"}, n.Table().Eligible("alien", nil))
	require.GreaterOrEqual(t, n.Stats().Foreign-before, int64(3), "hello, heartbeat and goodbye counted")
	p, ok := n.Table().Get("n1")
	require.True(t, ok, "a goodbye from another cluster does not remove the node")
	require.True(t, p.Alive)
}
