package membership_test

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
)

// With many eligible nodes Pick compares a sample of them: it still only
// picks nodes that qualify, prefers an idle Self, spreads over the nodes,
// and avoids busy ones.
func TestPickManyCandidates(t *testing.T) {
	tb, _ := newTable("self")
	tb.ApplyHello(hello("self", 1, 1, map[string][]string{"f": {"x"}}))
	for i := range 200 {
		locs := []string{"y"}
		if i%50 == 0 {
			locs = []string{"x", "y"} // 4 of 200 have loc x
		}
		id := fmt.Sprintf("n%03d", i)
		tb.ApplyHello(hello(id, 1, 1, map[string][]string{"f": locs, "g": {}}))
		load := int64(10)
		if i%2 == 0 {
			load = 0
		}
		tb.ApplyHeartbeat(heartbeat(id, 1, 1, load))
	}
	require.Len(t, tb.Eligible("f", []string{"x"}), 5)
	require.Len(t, tb.Eligible("f", []string{"x", "y"}), 4)
	require.Len(t, tb.Eligible("f", nil), 201)
	require.Empty(t, tb.Eligible("f", []string{"z"}))

	// Self is idle and eligible: it wins every time.
	for range 100 {
		n, ok := tb.Pick("f", nil, nil)
		require.True(t, ok)
		require.Equal(t, "self", n)
	}
	seen := map[string]bool{}
	for range 2000 {
		n, ok := tb.Pick("g", nil, nil) // self does not offer g
		require.True(t, ok)
		var i int
		_, err := fmt.Sscanf(n, "n%03d", &i)
		require.NoError(t, err)
		require.Zero(t, i%2, "picked %s, busy while idle ones were compared", n)
		seen[n] = true
	}
	require.Greater(t, len(seen), 50, "the picks spread over the idle nodes")
	for range 200 {
		n, ok := tb.Pick("f", []string{"x", "y"}, []string{"n000"})
		require.True(t, ok)
		require.Contains(t, []string{"n050", "n100", "n150"}, n)
	}
	_, ok := tb.Pick("f", []string{"x", "y"}, []string{"n000", "n050", "n100", "n150"})
	require.False(t, ok)
}

// The index follows hellos that change a node's functions and nodes that
// leave.
func TestIndexFollowsChanges(t *testing.T) {
	tb, clk := newTable("")
	tb.ApplyHello(hello("a", 1, 1, map[string][]string{"f": {"gpu"}}))
	tb.ApplyHello(hello("b", 1, 1, map[string][]string{"f": {"gpu", "gpu"}}))
	require.Equal(t, []string{"a", "b"}, tb.Eligible("f", []string{"gpu"}))
	tb.ApplyHello(hello("a", 1, 2, map[string][]string{"f": {"cpu"}}))
	require.Equal(t, []string{"b"}, tb.Eligible("f", []string{"gpu"}))
	require.Equal(t, []string{"a"}, tb.Eligible("f", []string{"cpu"}))
	tb.ApplyHello(hello("b", 1, 2))
	require.Empty(t, tb.Eligible("f", []string{"gpu"}))
	require.Equal(t, []string{"a", "b"}, tb.Eligible("echo", nil))
	clk.Advance(forgetAfter + 1)
	tb.ApplyHeartbeat(heartbeat("b", 1, 2, 0))
	p := tb.Prune()
	require.Equal(t, []string{"a"}, p.Forgotten)
	require.Equal(t, []string{"b"}, tb.Eligible("echo", nil))
	_, ok := tb.Pick("f", nil, nil)
	require.False(t, ok)
}

// Heartbeats and routing run together (under the race detector in CI).
func TestHeartbeatsWhileRouting(t *testing.T) {
	tb, _ := newTable("")
	for i := range 50 {
		tb.ApplyHello(hello(fmt.Sprintf("n%d", i), 1, 1))
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for !stop.Load() {
				_, ok := tb.Pick("echo", nil, nil)
				if !ok {
					t.Error("no route")
					return
				}
			}
		})
	}
	for r := range 200 {
		for i := range 50 {
			require.False(t, tb.ApplyHeartbeat(heartbeat(fmt.Sprintf("n%d", i), 1, 1, int64(r))))
		}
	}
	stop.Store(true)
	wg.Wait()
	require.Equal(t, int64(199), get(t, tb, "n7").Load.Inflight)
}
