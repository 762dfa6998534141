package node_test

import (
	"fmt"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mpreg/mpreg/internal/testcluster"
	"github.com/mpreg/mpreg/node"
)

// localityNodes starts nodes a, b, near and far on one JetStream server,
// each offering the data functions (registerData) with loc "at-<id>":
// near and far plan requests, far with locality off. It returns the
// server's URL once near and far route to every node.
func localityNodes(tb testing.TB) string {
	s := testcluster.Server(tb, testcluster.WithJetStream(tb.TempDir()))
	ids := []string{"a", "b", "near", "far"}
	var nodes []*node.Node
	for _, id := range ids {
		cfg := testcluster.NodeConfig(tb, id, "at-"+id)
		cfg.Gossip.DeadAfter = 5 * time.Second
		cfg.NoLocality = id == "far"
		cfg.Objects.Cache = 128 << 20
		nodes = append(nodes, testcluster.Node(tb, s.ClientURL(), cfg, func(n *node.Node) { registerData(tb, n) }))
	}
	for _, planner := range nodes[2:] {
		for _, id := range ids {
			testcluster.WaitForRoute(tb, planner.Table(), "make", []string{"at-" + id}, id)
		}
	}
	return s.ClientURL()
}

// twoStepChain runs make (size bytes, on a) then digest of it (anywhere), planned
// on the node planner, and returns the node digest ran on, the bytes it
// fetched, and how long it ran there.
func twoStepChain(tb testing.TB, url, planner string, size int) (string, int64, time.Duration) {
	tb.Helper()
	nc := testcluster.Conn(tb, url)
	resp := longRPC(tb, nc, "mpreg.default.node."+planner+".rpc", fmt.Sprintf(`{"trace": true, "timeout_ms": 120000, "cmds": [
		{"name": "x", "fun": "make",   "args": [%d, 5], "locs": ["at-a"]},
		{"name": "y", "fun": "digest", "args": ["x"]}]}`, size))
	require.Nil(tb, resp["error"], "response %v", resp)
	require.Equal(tb, map[string]any{"y": hexSHA(pattern(size, 5))}, resp["results"])
	tr := traceOf(tb, resp)
	require.Equal(tb, "a", tr["x"]["node"])
	if fetched(tr["y"]) == 0 {
		require.NotContains(tb, tr["y"], "fetched_bytes", "absent when nothing was fetched")
	}
	run, _ := tr["y"]["run_us"].(int64)
	return tr["y"]["node"].(string), fetched(tr["y"]), time.Duration(run) * time.Microsecond
}

// TestLocalityRunsWhereInputWasMade: of the four nodes that offer digest,
// the planner sends the step that reads make's 3 MiB result to the node
// that made it, which reads it from its cache: no bytes fetched. A planner
// with locality off sends it to the least loaded node, itself, which
// fetches all of it; so does a step pinned to another node.
func TestLocalityRunsWhereInputWasMade(t *testing.T) {
	url := localityNodes(t)
	const size = 3 << 20
	for range 5 {
		at, n, _ := twoStepChain(t, url, "near", size)
		require.Equal(t, "a", at, "digest ran where its input was made")
		require.Zero(t, n)
	}
	at, n, _ := twoStepChain(t, url, "far", size)
	require.Equal(t, "far", at, "locality off: the least loaded node, the planner itself")
	require.EqualValues(t, size, n)

	nc := testcluster.Conn(t, url)
	resp := longRPC(t, nc, "mpreg.default.node.near.rpc", fmt.Sprintf(`{"trace": true, "cmds": [
		{"name": "x", "fun": "make",   "args": [%d, 5], "locs": ["at-a"]},
		{"name": "y", "fun": "digest", "args": ["x"], "locs": ["at-b"]}]}`, size))
	require.Nil(t, resp["error"], "response %v", resp)
	tr := traceOf(t, resp)
	require.Equal(t, "b", tr["y"]["node"])
	require.EqualValues(t, size, fetched(tr["y"]), "a node that did not make it fetches it")
}

// BenchmarkLocality50MiB times a two-step chain that makes 50 MiB on one
// node and digests it, with locality (the digest runs where the value is,
// reading it from the cache) and without (the digest runs on the planner,
// fetching it from JetStream), alternating the two. It reports the
// median time of each request (near-ms, far-ms), and of its digest step
// on its node (near-step-ms, far-step-ms).
func BenchmarkLocality50MiB(b *testing.B) {
	url := localityNodes(b)
	const size = 50 << 20
	var near, far, nearStep, farStep []time.Duration
	for i := 0; i < b.N; i++ {
		for _, planner := range []string{"near", "far"} {
			start := time.Now()
			at, n, step := twoStepChain(b, url, planner, size)
			took := time.Since(start)
			if planner == "near" {
				require.Equal(b, "a", at)
				require.Zero(b, n)
				near, nearStep = append(near, took), append(nearStep, step)
			} else {
				require.Equal(b, "far", at)
				require.EqualValues(b, size, n)
				far, farStep = append(far, took), append(farStep, step)
			}
		}
	}
	ms := func(l []time.Duration) float64 { return median(l).Seconds() * 1000 }
	b.ReportMetric(ms(near), "near-ms")
	b.ReportMetric(ms(far), "far-ms")
	b.ReportMetric(ms(nearStep), "near-step-ms")
	b.ReportMetric(ms(farStep), "far-step-ms")
	b.ReportMetric(0, "ns/op")
}

func median(l []time.Duration) time.Duration {
	l = slices.Clone(l)
	sort.Slice(l, func(i, j int) bool { return l[i] < l[j] })
	return l[len(l)/2]
}
