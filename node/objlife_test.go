package node_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/mpreg/mpreg/bus"
	"github.com/mpreg/mpreg/internal/testcluster"
	"github.com/mpreg/mpreg/internal/testwait"
	"github.com/mpreg/mpreg/node"
)

// bucketNames lists the names of the objects in the cluster's bucket on
// the server at url, sorted.
func bucketNames(t testing.TB, url string) []string {
	t.Helper()
	names, err := listBucket(t, url)
	require.NoError(t, err)
	return names
}

// listBucket is bucketNames, its error returned. It uses one connection
// per server and test, and gives a listing two seconds: one that ran
// while objects were being deleted once outlasted ten seconds under the
// race detector, and the pollers rather look again.
func listBucket(t testing.TB, url string) ([]string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	store, err := bucketOf(t, url).ObjectStore(ctx, bus.ObjectBucket("", "default"))
	if err != nil {
		return nil, err
	}
	infos, err := bus.ListObjects(ctx, store)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, i := range infos {
		names = append(names, i.Name)
	}
	slices.Sort(names)
	return names, nil
}

var (
	jsMu    sync.Mutex
	jsConns = map[string]jetstream.JetStream{} // by test name and url
)

// bucketOf returns a JetStream context on url, one per test.
func bucketOf(t testing.TB, url string) jetstream.JetStream {
	t.Helper()
	jsMu.Lock()
	defer jsMu.Unlock()
	key := t.Name() + " " + url
	if js, ok := jsConns[key]; ok {
		return js
	}
	js, err := jetstream.New(testcluster.Conn(t, url))
	require.NoError(t, err)
	jsConns[key] = js
	t.Cleanup(func() { jsMu.Lock(); delete(jsConns, key); jsMu.Unlock() })
	return js
}

// waitBucket waits until the bucket's object names are want.
func waitBucket(t testing.TB, url string, want []string) {
	t.Helper()
	testwait.For(t, fmt.Sprintf("the bucket to hold %v", want), func() error {
		got, err := listBucket(t, url)
		switch {
		case err != nil:
			return err
		case !slices.Equal(got, want):
			return fmt.Errorf("the bucket holds %v", got)
		}
		return nil
	})
}

// refName is the object name of a reference in a JSON response.
func refName(t testing.TB, v any) string {
	t.Helper()
	m, ok := v.(map[string]any)
	require.True(t, ok, "not a reference: %v", v)
	return m["$obj"].(map[string]any)["name"].(string)
}

// waitDeleted waits until n has deleted k objects.
func waitDeleted(t testing.TB, n *node.Node, k int64) {
	t.Helper()
	testwait.For(t, fmt.Sprintf("%d objects deleted", k), func() error {
		if got := n.Stats().ObjectsDeleted; got != k {
			return fmt.Errorf("%d deleted", got)
		}
		return nil
	})
}

// lifeNode starts one node with JetStream, its limits edited, with the
// data functions and two that fail.
func lifeNode(t *testing.T, edit func(*node.Config)) (url string, n *node.Node) {
	t.Helper()
	s := testcluster.Server(t, testcluster.WithJetStream(t.TempDir()))
	nodes := jsNodes(t, []string{s.ClientURL()}, []string{"a"}, edit)
	require.NoError(t, nodes[0].Register("boom", func([]byte) (int, error) { return 0, errors.New("boom") }))
	require.NoError(t, nodes[0].Register("hang", func(ctx context.Context, _ []byte) (int, error) {
		<-ctx.Done()
		return 0, ctx.Err()
	}))
	return s.ClientURL(), nodes[0]
}

// chain is a request whose steps x and y make and change 600,000 bytes,
// each stored by reference, and whose last step is fun of y.
func chain(last string, extra string) string {
	return fmt.Sprintf(`{"cmds": [
		{"name": "x", "fun": "make", "args": [600000, 3]},
		{"name": "y", "fun": "flip", "args": ["x"]}%s%s]}`, last, extra)
}

// TestObjectsLifetimeIntermediatesGoAtOnce: once a chain has been answered,
// the objects of its intermediate steps are gone from the bucket; its
// final result's object stays for the caller until the result TTL.
func TestObjectsLifetimeIntermediatesGoAtOnce(t *testing.T) {
	url, n := lifeNode(t, nil) // result TTL 10 min
	nc := testcluster.Conn(t, url)
	resp := rpcJSON(t, nc, chain(`, {"name": "z", "fun": "flip", "args": ["y"]}`, ""))
	require.Nil(t, resp["error"], "response %v", resp)
	z := refName(t, resp["results"].(map[string]any)["z"])
	waitBucket(t, url, []string{z})
	waitDeleted(t, n, 2)

	// The whole chain's results: every object is a final result.
	resp = rpcJSON(t, nc, strings.Replace(chain("", ""), `"cmds"`, `"results": "all", "cmds"`, 1))
	require.Nil(t, resp["error"], "response %v", resp)
	res := resp["results"].(map[string]any)
	want := []string{z, refName(t, res["x"]), refName(t, res["y"])}
	slices.Sort(want)
	require.Equal(t, want, bucketNames(t, url))
	waitDeleted(t, n, 2)
}

// TestObjectsLifetimeResultTTL: a final result's object is deleted once
// the result TTL has passed since the response.
func TestObjectsLifetimeResultTTL(t *testing.T) {
	url, _ := lifeNode(t, func(c *node.Config) { c.Objects.ResultTTL = 300 * time.Millisecond })
	nc := testcluster.Conn(t, url)
	resp := rpcJSON(t, nc, chain("", ""))
	require.Nil(t, resp["error"], "response %v", resp)
	refName(t, resp["results"].(map[string]any)["y"])
	waitBucket(t, url, nil)
}

// TestObjectsLifetimeFailedChain: a chain that fails after its first
// steps stored their values, by an error or by its deadline, leaves in the
// bucket only the objects of the results its response holds (the partial
// results of docs/PROTOCOL.md §5.1), which are the caller's for the result
// TTL; the other intermediates are gone.
func TestObjectsLifetimeFailedChain(t *testing.T) {
	url, n := lifeNode(t, nil)
	nc := testcluster.Conn(t, url)
	for i, c := range []struct{ last, code string }{
		{`, {"name": "z", "fun": "boom", "args": ["y"]}`, "FUNCTION_ERROR"},
		{`, {"name": "z", "fun": "hang", "args": ["y"]}`, "TIMEOUT"},
	} {
		before := bucketNames(t, url)
		body := strings.Replace(chain(c.last, ""), `"cmds"`, `"timeout_ms": 1500, "cmds"`, 1)
		resp := rpcJSON(t, nc, body)
		require.Equal(t, c.code, resp["error"].(map[string]any)["code"], "response %v", resp)
		want := slices.Clone(before)
		for _, v := range resp["results"].(map[string]any) {
			want = append(want, refName(t, v))
		}
		slices.Sort(want)
		require.Len(t, want, len(before)+1, "one partial result: y, not yet read by z")
		waitDeleted(t, n, int64(i+1))
		waitBucket(t, url, want)
	}
}

// TestObjectsLifetimeDeleteBound: past MaxPendingDeletes the delete due
// soonest is dropped, and its object left to the bucket's max age: of a
// chain's three intermediates, with room for two pending deletes, one
// stays.
func TestObjectsLifetimeDeleteBound(t *testing.T) {
	url, n := lifeNode(t, func(c *node.Config) { c.Objects.MaxPendingDeletes = 2 })
	nc := testcluster.Conn(t, url)
	resp := rpcJSON(t, nc, chain(`, {"name": "z", "fun": "flip", "args": ["y"]}, {"name": "w", "fun": "length", "args": ["z"]}`, ""))
	require.Nil(t, resp["error"], "response %v", resp)
	require.Equal(t, map[string]any{"w": int64(600000)}, resp["results"])
	testwait.For(t, "two deletes", func() error {
		if s := n.Stats(); s.ObjectsDeleted != 2 || s.ObjectDeletesDropped != 1 {
			return fmt.Errorf("stats %+v", s)
		}
		return nil
	})
	require.Len(t, bucketNames(t, url), 1)
}

// TestObjectsLifetimeCallerReferences: a reference the caller passed in is
// the caller's: the planner does not delete it.
func TestObjectsLifetimeCallerReferences(t *testing.T) {
	url, _ := lifeNode(t, nil)
	nc := testcluster.Conn(t, url)
	resp := rpcJSON(t, nc, `{"cmds": [{"name": "x", "fun": "make", "args": [600000, 3]}]}`)
	require.Nil(t, resp["error"], "response %v", resp)
	x := resp["results"].(map[string]any)["x"]
	body := fmt.Sprintf(`{"cmds": [{"name": "l", "fun": "length", "args": [%s]}]}`, mustJSON(t, x))
	resp = rpcJSON(t, nc, body)
	require.Equal(t, map[string]any{"l": int64(600000)}, resp["results"], "response %v", resp)
	require.Equal(t, []string{refName(t, x)}, bucketNames(t, url))
}

// TestObjectsLifetimeObjectTTL: a node that creates the bucket gives it
// Objects.TTL as its max age; a node with another Objects.TTL uses the
// bucket as it is, and says so once.
func TestObjectsLifetimeObjectTTL(t *testing.T) {
	url, n := lifeNode(t, func(c *node.Config) { c.Objects.TTL = 90 * time.Second })
	<-n.JetStreamKnown()
	js, err := jetstream.New(testcluster.Conn(t, url))
	require.NoError(t, err)
	store, err := js.ObjectStore(testwait.Ctx(t), bus.ObjectBucket("", "default"))
	require.NoError(t, err)
	st, err := store.Status(testwait.Ctx(t))
	require.NoError(t, err)
	require.Equal(t, 90*time.Second, st.TTL())

	logs := &testwait.Buffer{}
	cfg := testcluster.NodeConfig(t, "b")
	cfg.Hooks.Logger = slog.New(slog.NewTextHandler(logs, nil))
	b := testcluster.Node(t, url, cfg, nil)
	<-b.JetStreamKnown()
	require.Equal(t, 1, strings.Count(logs.String(),
		`msg="the object bucket exists with another max age than object_ttl: it keeps its own" node=b bucket=mpreg-default bucket_ttl=1m30s object_ttl=1h0m0s`), logs.String())
	st, err = store.Status(testwait.Ctx(t))
	require.NoError(t, err)
	require.Equal(t, 90*time.Second, st.TTL())
}

// TestObjectsLifetimeDelegated: a run of steps delegated to another node
// deletes its own intermediates there; the result it returns by reference
// is an intermediate of the delegating planner's request, which deletes
// it. Nothing is left.
func TestObjectsLifetimeDelegated(t *testing.T) {
	s := testcluster.Server(t, testcluster.WithJetStream(t.TempDir()))
	url := s.ClientURL()
	nodes := jsNodes(t, []string{url}, []string{"a", "b"}, nil)
	nc := testcluster.Conn(t, url)
	resp := longRPC(t, nc, "mpreg.default.node.a.rpc", `{"trace": true, "cmds": [
		{"name": "x", "fun": "make",   "args": [600000, 3], "locs": ["at-b"]},
		{"name": "y", "fun": "flip",   "args": ["x"],       "locs": ["at-b"]},
		{"name": "z", "fun": "length", "args": ["y"],       "locs": ["at-a"]}]}`)
	require.Nil(t, resp["error"], "response %v", resp)
	require.Equal(t, map[string]any{"z": int64(600000)}, resp["results"])
	tr := traceOf(t, resp)
	require.Equal(t, "b", tr["y"]["node"])
	waitBucket(t, url, nil)
	waitDeleted(t, nodes[1], 1) // x, by the delegate
	waitDeleted(t, nodes[0], 1) // y, by the planner
}

// TestObjectsLifetimeDrain: a node that drains right after a request
// leaves its final result to the bucket's max age (its caller may still
// read it) and none of its intermediates.
func TestObjectsLifetimeDrain(t *testing.T) {
	url, n := lifeNode(t, nil)
	nc := testcluster.Conn(t, url)
	resp := rpcJSON(t, nc, chain("", ""))
	require.Nil(t, resp["error"], "response %v", resp)
	y := refName(t, resp["results"].(map[string]any)["y"])
	require.NoError(t, n.Drain(testwait.Ctx(t)))
	require.Equal(t, []string{y}, bucketNames(t, url))
	require.EqualValues(t, 1, n.Stats().ObjectsDeleted)
}
