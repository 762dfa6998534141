package membership_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mpreg/mpreg/membership"
	"github.com/mpreg/mpreg/schema"
)

func TestDefaults(t *testing.T) {
	tb := membership.New(membership.Config{})
	require.True(t, tb.ApplyHello(hello("n1", 1, 1)))
	p := get(t, tb, "n1")
	assert.True(t, p.Alive)
	assert.WithinDuration(t, time.Now(), p.LastHeard, time.Minute, "the default clock is time.Now")
}

func TestHelloAdds(t *testing.T) {
	tb, c := newTable("")
	ch := tb.Changed()
	h := hello("n1", 10, 1, map[string][]string{"predict": {"gpu"}})
	h.AdvertisedURLs = []string{"nats://10.0.0.5:4222"}
	require.True(t, tb.ApplyHello(h))
	assert.True(t, closed(ch), "Changed closes on a new node")
	assert.False(t, closed(tb.Changed()), "a new channel is handed out")

	p := get(t, tb, "n1")
	assert.Equal(t, *h, p.Hello)
	assert.True(t, p.Alive)
	assert.Equal(t, c.Now(), p.FirstSeen)
	assert.Equal(t, c.Now(), p.LastHeard)
	assert.Zero(t, p.Outstanding)

	_, ok := tb.Get("n2")
	assert.False(t, ok)
	node, ok := tb.Pick("predict", []string{"gpu"}, nil)
	require.True(t, ok)
	assert.Equal(t, "n1", node)
}

func TestOlderIncarnationIgnored(t *testing.T) {
	tb, c := newTable("")
	require.True(t, tb.ApplyHello(hello("n1", 2, 1)))
	c.Advance(2 * time.Second)
	ch := tb.Changed()
	assert.False(t, tb.ApplyHello(hello("n1", 1, 9, map[string][]string{"old": {}})))
	assert.False(t, tb.ApplyHeartbeat(heartbeat("n1", 1, 9, 0)), "an old incarnation's heartbeat asks for nothing")
	assert.False(t, tb.ApplyGoodbye(goodbye("n1", 1)))
	assert.False(t, closed(ch))

	p := get(t, tb, "n1")
	assert.Equal(t, int64(2), p.Hello.Incarnation)
	assert.Equal(t, int64(1), p.Hello.Version)
	assert.NotContains(t, p.Hello.Funs, "old")
	assert.Equal(t, c.Now().Add(-2*time.Second), p.LastHeard, "an old incarnation does not refresh liveness")

	c.Advance(deadAfter)
	tb.ApplyHeartbeat(heartbeat("n1", 1, 1, 0))
	assert.False(t, get(t, tb, "n1").Alive)
}

func TestOlderVersionIgnored(t *testing.T) {
	tb, c := newTable("")
	require.True(t, tb.ApplyHello(hello("n1", 1, 3, map[string][]string{"new": {}})))
	c.Advance(time.Second)
	ch := tb.Changed()
	assert.False(t, tb.ApplyHello(hello("n1", 1, 2, map[string][]string{"old": {}})))
	assert.False(t, closed(ch))
	p := get(t, tb, "n1")
	assert.Equal(t, int64(3), p.Hello.Version)
	assert.Contains(t, p.Hello.Funs, "new")
	assert.NotContains(t, p.Hello.Funs, "old")
}

func TestNewerVersionReplaces(t *testing.T) {
	tb, c := newTable("")
	require.True(t, tb.ApplyHello(hello("n1", 1, 1, map[string][]string{"a": {}})))
	first := c.Now()
	tb.ApplyHeartbeat(heartbeat("n1", 1, 1, 4))
	tb.Begin("n1")
	c.Advance(time.Second)
	require.True(t, tb.ApplyHello(hello("n1", 1, 2, map[string][]string{"b": {}})))
	p := get(t, tb, "n1")
	assert.Equal(t, int64(2), p.Hello.Version)
	assert.Contains(t, p.Hello.Funs, "b")
	assert.NotContains(t, p.Hello.Funs, "a")
	assert.Equal(t, first, p.FirstSeen, "same process: first seen is kept")
	assert.Equal(t, c.Now(), p.LastHeard)
	assert.Equal(t, int64(4), p.Load.Inflight, "same process: load is kept")
	assert.Equal(t, int64(1), p.Outstanding)
}

func TestEqualVersionRefreshes(t *testing.T) {
	tb, c := newTable("")
	require.True(t, tb.ApplyHello(hello("n1", 1, 1)))
	c.Advance(2 * time.Second)
	ch := tb.Changed()
	assert.False(t, tb.ApplyHello(hello("n1", 1, 1)), "a refresh of a live node is no change")
	assert.False(t, closed(ch))
	assert.Equal(t, c.Now(), get(t, tb, "n1").LastHeard)

	c.Advance(2 * time.Second)
	assert.True(t, get(t, tb, "n1").Alive, "alive 2 s after the refresh")

	c.Advance(deadAfter)
	require.False(t, get(t, tb, "n1").Alive)
	assert.True(t, tb.ApplyHello(hello("n1", 1, 1)), "a refresh revives a dead node")
	assert.True(t, closed(ch))
	assert.True(t, get(t, tb, "n1").Alive)
}

func TestNewerIncarnationReplaces(t *testing.T) {
	tb, c := newTable("")
	require.True(t, tb.ApplyHello(hello("n1", 100, 7, map[string][]string{"a": {}})))
	tb.ApplyHeartbeat(heartbeat("n1", 100, 7, 9))
	tb.Begin("n1")
	c.Advance(time.Second)
	ch := tb.Changed()
	require.True(t, tb.ApplyHello(hello("n1", 200, 1, map[string][]string{"b": {}})), "a restart with the same id")
	assert.True(t, closed(ch))
	p := get(t, tb, "n1")
	assert.Equal(t, int64(200), p.Hello.Incarnation)
	assert.Equal(t, int64(1), p.Hello.Version, "a lower version in a newer incarnation is accepted")
	assert.Contains(t, p.Hello.Funs, "b")
	assert.NotContains(t, p.Hello.Funs, "a")
	assert.Equal(t, c.Now(), p.FirstSeen, "a new process is first seen now")
	assert.Zero(t, p.Load.Inflight, "the old process's load is dropped")
	assert.Equal(t, int64(1), p.Outstanding, "what this table sent is still outstanding")

	assert.False(t, tb.ApplyHello(hello("n1", 100, 8)), "the old incarnation is ignored from now on")
}

func TestGoodbye(t *testing.T) {
	tb, _ := newTable("")
	require.True(t, tb.ApplyHello(hello("n1", 5, 1)))
	require.True(t, tb.ApplyHello(hello("n2", 5, 1)))
	ch := tb.Changed()
	require.True(t, tb.ApplyGoodbye(goodbye("n1", 5)))
	assert.True(t, closed(ch))

	assert.Equal(t, map[string]int{"n2": 50}, picks(tb, 50, "echo", nil, nil), "Pick skips a node that said goodbye")
	_, ok := tb.Get("n1")
	assert.False(t, ok)
	assert.Equal(t, []string{"n2"}, tb.Eligible("echo", nil))
	require.Len(t, tb.Peers(), 1)
	assert.Equal(t, "n2", tb.Peers()[0].Hello.Node)

	ch = tb.Changed()
	assert.False(t, tb.ApplyGoodbye(goodbye("n1", 5)), "a repeated goodbye is no change")
	assert.False(t, tb.ApplyHello(hello("n1", 5, 1)), "a later hello of the same incarnation is ignored")
	assert.False(t, tb.ApplyHello(hello("n1", 5, 2)), "even with a newer version")
	assert.False(t, tb.ApplyHeartbeat(heartbeat("n1", 5, 1, 0)))
	assert.False(t, tb.ApplyHeartbeat(heartbeat("n1", 5, 3, 0)), "no hello is fetched for a gone incarnation")
	assert.False(t, closed(ch))
	assert.Equal(t, map[string]int{"n2": 20}, picks(tb, 20, "echo", nil, nil))

	assert.True(t, tb.ApplyHeartbeat(heartbeat("n1", 6, 1, 0)), "a newer incarnation's heartbeat asks for its hello")
	require.True(t, tb.ApplyHello(hello("n1", 6, 1)), "a hello of a newer incarnation is accepted")
	assert.True(t, closed(ch))
	assert.Equal(t, []string{"n1", "n2"}, tb.Eligible("echo", nil))
	assert.True(t, get(t, tb, "n1").Alive)

	assert.False(t, tb.ApplyGoodbye(goodbye("n1", 5)), "a goodbye of an older incarnation is ignored")
	assert.True(t, get(t, tb, "n1").Alive)
	assert.False(t, tb.ApplyGoodbye(goodbye("n9", 1)), "a goodbye from an unknown node is ignored")
}

func TestGoodbyeOfNewerIncarnation(t *testing.T) {
	// The goodbye of a restarted process can arrive before its hello.
	tb, _ := newTable("")
	require.True(t, tb.ApplyHello(hello("n1", 1, 4)))
	require.True(t, tb.ApplyGoodbye(goodbye("n1", 2)))
	_, ok := tb.Pick("echo", nil, nil)
	assert.False(t, ok)
	assert.False(t, tb.ApplyHello(hello("n1", 1, 5)), "the older incarnation is ignored")
	assert.False(t, tb.ApplyHello(hello("n1", 2, 1)), "the incarnation that said goodbye is ignored")
	require.True(t, tb.ApplyHello(hello("n1", 3, 1)))
	node, ok := tb.Pick("echo", nil, nil)
	require.True(t, ok)
	assert.Equal(t, "n1", node)
}

func TestDrainingNodeIsRememberedWhileItTalks(t *testing.T) {
	// A node that said goodbye keeps heartbeating while it finishes its
	// work in flight: the table must neither forget it (and then take a
	// late hello of that incarnation as new) nor cancel the requests in
	// flight there as lost.
	tb, c := newTable("")
	require.True(t, tb.ApplyHello(hello("n1", 1, 1)))
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	done := tb.Track("n1", cancel)
	defer done()

	require.True(t, tb.ApplyGoodbye(goodbye("n1", 1)))
	for range 2 * int(forgetAfter/time.Second) {
		c.Advance(time.Second)
		assert.False(t, tb.ApplyHeartbeat(heartbeat("n1", 1, 1, 1)))
		assert.Zero(t, len(tb.Prune().Forgotten))
	}
	assert.NoError(t, ctx.Err(), "a draining node that still talks is not lost")
	assert.False(t, tb.ApplyHello(hello("n1", 1, 1)), "the gone incarnation is still remembered")
	_, ok := tb.Pick("echo", nil, nil)
	assert.False(t, ok)

	// Once it falls silent it is lost, then forgotten.
	c.Advance(deadAfter + time.Nanosecond)
	assert.Zero(t, len(tb.Prune().Forgotten))
	assert.ErrorIs(t, context.Cause(ctx), membership.ErrNodeLost)
	c.Advance(forgetAfter)
	assert.Equal(t, 1, len(tb.Prune().Forgotten))
}

func TestHeartbeat(t *testing.T) {
	tb, c := newTable("")
	assert.True(t, tb.ApplyHeartbeat(heartbeat("n1", 1, 1, 0)), "an unknown node's hello is needed")
	_, ok := tb.Get("n1")
	assert.False(t, ok, "a heartbeat does not add a node")

	require.True(t, tb.ApplyHello(hello("n1", 1, 2)))
	assert.False(t, tb.ApplyHeartbeat(heartbeat("n1", 1, 2, 3)))
	assert.False(t, tb.ApplyHeartbeat(heartbeat("n1", 1, 1, 3)), "an older version asks for nothing")
	assert.True(t, tb.ApplyHeartbeat(heartbeat("n1", 1, 3, 3)), "a newer version asks for the hello")
	assert.True(t, tb.ApplyHeartbeat(heartbeat("n1", 2, 1, 3)), "a newer incarnation asks for the hello")
	assert.Equal(t, int64(1), get(t, tb, "n1").Hello.Incarnation, "a heartbeat never changes the incarnation")

	// Heartbeats refresh liveness and carry the load.
	c.Advance(2 * time.Second)
	tb.ApplyHeartbeat(heartbeat("n1", 1, 2, 7))
	p := get(t, tb, "n1")
	assert.Equal(t, c.Now(), p.LastHeard)
	assert.Equal(t, schema.Load{Inflight: 7, Limit: 100}, p.Load)
	c.Advance(2 * time.Second)
	assert.True(t, get(t, tb, "n1").Alive, "4 s after the hello, 2 s after the heartbeat")
}

func TestDeadAfterSilence(t *testing.T) {
	tb, c := newTable("")
	require.True(t, tb.ApplyHello(hello("n1", 1, 1)))
	require.True(t, tb.ApplyHello(hello("n2", 1, 1)))
	c.Advance(deadAfter)
	assert.True(t, get(t, tb, "n1").Alive, "alive at exactly DeadAfter")
	tb.ApplyHeartbeat(heartbeat("n2", 1, 1, 0))

	c.Advance(time.Nanosecond)
	p := get(t, tb, "n1")
	assert.False(t, p.Alive)
	assert.Equal(t, map[string]int{"n2": 30}, picks(tb, 30, "echo", nil, nil), "a dead node is not picked")
	assert.Equal(t, []string{"n2"}, tb.Eligible("echo", nil))
	peers := tb.Peers()
	require.Len(t, peers, 2, "Peers lists dead nodes too")
	assert.Equal(t, "n1", peers[0].Hello.Node)
	assert.False(t, peers[0].Alive)
	assert.True(t, peers[1].Alive)

	ch := tb.Changed()
	assert.False(t, tb.ApplyHeartbeat(heartbeat("n1", 1, 1, 0)))
	assert.True(t, closed(ch), "a revival is a change")
	assert.True(t, get(t, tb, "n1").Alive, "a heartbeat revives it")
	assert.ElementsMatch(t, []string{"n1", "n2"}, keys(picks(tb, 200, "echo", nil, nil)))
}

func keys(m map[string]int) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestPrune(t *testing.T) {
	tb, c := newTable("me")
	require.True(t, tb.ApplyHello(hello("me", 1, 1)))
	require.True(t, tb.ApplyHello(hello("n1", 1, 1)))
	require.True(t, tb.ApplyHello(hello("n2", 1, 1)))
	c.Advance(forgetAfter)
	tb.ApplyHeartbeat(heartbeat("n2", 1, 1, 0))
	// n1 is dead of silence: that change is announced here, once.
	assert.Equal(t, membership.Pruned{Silent: []string{"n1"}}, tb.Prune())
	ch := tb.Changed()
	assert.Equal(t, membership.Pruned{}, tb.Prune(), "not forgotten at exactly ForgetAfter, and silent already")
	assert.False(t, closed(ch))
	_, ok := tb.Get("n1")
	assert.True(t, ok)

	c.Advance(time.Nanosecond)
	assert.Equal(t, membership.Pruned{Forgotten: []string{"n1"}}, tb.Prune())
	assert.True(t, closed(ch))
	_, ok = tb.Get("n1")
	assert.False(t, ok, "n1 is forgotten")
	assert.True(t, tb.ApplyHeartbeat(heartbeat("n1", 1, 1, 0)), "a forgotten node is unknown again")
	get(t, tb, "n2")
	get(t, tb, "me")
	assert.Zero(t, len(tb.Prune().Forgotten))

	c.Advance(10 * forgetAfter)
	assert.Equal(t, 1, len(tb.Prune().Forgotten), "n2 goes, self stays")
	assert.True(t, get(t, tb, "me").Alive)
}

func TestForgetAfterAtLeastDeadAfter(t *testing.T) {
	c := newClock()
	tb := membership.New(membership.Config{DeadAfter: 10 * time.Second, ForgetAfter: time.Second, Now: c.Now})
	require.True(t, tb.ApplyHello(hello("n1", 1, 1)))
	c.Advance(5 * time.Second)
	assert.Zero(t, len(tb.Prune().Forgotten), "a live node is never forgotten")
	assert.True(t, get(t, tb, "n1").Alive)
}

func TestMarkDead(t *testing.T) {
	tb, c := newTable("")
	require.True(t, tb.ApplyHello(hello("n1", 1, 1)))
	require.True(t, tb.ApplyHello(hello("n2", 1, 1)))
	ch := tb.Changed()
	tb.MarkDead("n1")
	assert.True(t, closed(ch))
	assert.False(t, get(t, tb, "n1").Alive)
	assert.Equal(t, map[string]int{"n2": 30}, picks(tb, 30, "echo", nil, nil))

	ch = tb.Changed()
	tb.MarkDead("n1")
	tb.MarkDead("unknown")
	assert.False(t, closed(ch), "marking a dead or unknown node is no change")

	c.Advance(time.Second)
	assert.False(t, get(t, tb, "n1").Alive, "still dead while unheard")
	tb.ApplyHeartbeat(heartbeat("n1", 1, 1, 0))
	assert.True(t, closed(ch))
	assert.True(t, get(t, tb, "n1").Alive, "heard again")

	tb.MarkDead("n2")
	assert.True(t, tb.ApplyHello(hello("n2", 1, 1)), "an equal hello revives a node marked dead")
	assert.True(t, get(t, tb, "n2").Alive)

	tb.MarkDead("n2")
	assert.False(t, tb.ApplyHeartbeat(heartbeat("n2", 0, 1, 0)))
	assert.False(t, get(t, tb, "n2").Alive, "an older incarnation does not revive it")
}

func TestSelfNeverDiesOfSilence(t *testing.T) {
	tb, c := newTable("me")
	require.True(t, tb.ApplyHello(hello("me", 1, 1)))
	require.True(t, tb.ApplyHello(hello("n1", 1, 1)))
	c.Advance(100 * forgetAfter)
	assert.True(t, get(t, tb, "me").Alive)
	assert.Equal(t, 1, len(tb.Prune().Forgotten))
	node, ok := tb.Pick("echo", nil, nil)
	require.True(t, ok)
	assert.Equal(t, "me", node)
	assert.Equal(t, []string{"me"}, tb.Eligible("echo", nil))

	require.True(t, tb.ApplyGoodbye(goodbye("me", 1)))
	_, ok = tb.Pick("echo", nil, nil)
	assert.False(t, ok, "self is not routed to once it said goodbye")
}

func TestPickEligibility(t *testing.T) {
	tb, _ := newTable("")
	require.True(t, tb.ApplyHello(hello("n1", 1, 1, map[string][]string{"predict": {"model-a", "gpu"}})))
	require.True(t, tb.ApplyHello(hello("n2", 1, 1, map[string][]string{"predict": {"model-a"}})))
	require.True(t, tb.ApplyHello(hello("n3", 1, 1, map[string][]string{"other": {"gpu"}})))

	for _, tc := range []struct {
		fun  string
		locs []string
		want []string
	}{
		{"predict", []string{"model-a", "gpu"}, []string{"n1"}},
		{"predict", []string{"gpu", "model-a"}, []string{"n1"}},
		{"predict", []string{"gpu"}, []string{"n1"}},
		{"predict", []string{"model-a"}, []string{"n1", "n2"}},
		{"predict", nil, []string{"n1", "n2"}},
		{"predict", []string{}, []string{"n1", "n2"}},
		{"predict", []string{"model-b"}, nil},
		{"other", []string{"gpu"}, []string{"n3"}},
		{"other", []string{"model-a"}, nil},
		{"echo", nil, []string{"n1", "n2", "n3"}},
		{"echo", []string{"gpu"}, nil},
		{"missing", nil, nil},
	} {
		assert.Equal(t, tc.want, tb.Eligible(tc.fun, tc.locs), "%s %v", tc.fun, tc.locs)
		got := keys(picks(tb, 200, tc.fun, tc.locs, nil))
		if tc.want == nil {
			assert.Equal(t, []string{""}, got, "%s %v", tc.fun, tc.locs)
			continue
		}
		assert.ElementsMatch(t, tc.want, got, "%s %v", tc.fun, tc.locs)
	}
}

func TestPickLeastLoaded(t *testing.T) {
	tb, _ := newTable("")
	for _, n := range []string{"n1", "n2", "n3"} {
		require.True(t, tb.ApplyHello(hello(n, 1, 1)))
	}
	tb.ApplyHeartbeat(heartbeat("n1", 1, 1, 5))
	tb.ApplyHeartbeat(heartbeat("n2", 1, 1, 2))
	tb.ApplyHeartbeat(heartbeat("n3", 1, 1, 3))
	assert.Equal(t, map[string]int{"n2": 20}, picks(tb, 20, "echo", nil, nil))

	tb.Begin("n2")
	tb.Begin("n2")
	assert.Equal(t, int64(2), get(t, tb, "n2").Outstanding)
	assert.Equal(t, map[string]int{"n3": 20}, picks(tb, 20, "echo", nil, nil), "n2: 2+2, n3: 3")

	tb.End("n2")
	assert.ElementsMatch(t, []string{"n2", "n3"}, keys(picks(tb, 200, "echo", nil, nil)), "n2: 2+1, n3: 3")

	tb.End("n2")
	assert.Equal(t, map[string]int{"n2": 20}, picks(tb, 20, "echo", nil, nil), "n2: 2+0, n3: 3")
	tb.End("n2")
	tb.End("unknown")
	tb.Begin("unknown")
	assert.Zero(t, get(t, tb, "n2").Outstanding, "Outstanding never goes below zero")

	tb.ApplyHeartbeat(heartbeat("n2", 1, 1, 10))
	assert.Equal(t, map[string]int{"n3": 20}, picks(tb, 20, "echo", nil, nil))

	assert.Equal(t, map[string]int{"n1": 20}, picks(tb, 20, "echo", nil, []string{"n3", "n2"}), "exclude")
	assert.Equal(t, map[string]int{"": 5}, picks(tb, 5, "echo", nil, []string{"n1", "n2", "n3"}))
}

func TestPickNegativeLoad(t *testing.T) {
	// A bad heartbeat load must not hide every node from Pick.
	tb, _ := newTable("")
	require.True(t, tb.ApplyHello(hello("n1", 1, 1)))
	require.True(t, tb.ApplyHello(hello("n2", 1, 1)))
	tb.ApplyHeartbeat(heartbeat("n1", 1, 1, -5))
	tb.ApplyHeartbeat(heartbeat("n2", 1, 1, -5))
	for range 20 {
		node, ok := tb.Pick("echo", nil, nil)
		require.True(t, ok)
		assert.Contains(t, []string{"n1", "n2"}, node)
	}
	tb.ApplyHeartbeat(heartbeat("n2", 1, 1, 1))
	assert.Equal(t, map[string]int{"n1": 20}, picks(tb, 20, "echo", nil, nil))
}

func TestPickSelfWinsTies(t *testing.T) {
	tb, _ := newTable("me")
	for _, n := range []string{"a", "me", "z", "b"} {
		require.True(t, tb.ApplyHello(hello(n, 1, 1)))
	}
	assert.Equal(t, map[string]int{"me": 200}, picks(tb, 200, "echo", nil, nil))

	tb.Begin("me")
	got := picks(tb, 300, "echo", nil, nil)
	assert.Zero(t, got["me"], "self loses when it is busier")
	assert.ElementsMatch(t, []string{"a", "b", "z"}, keys(got))

	assert.Equal(t, map[string]int{"me": 20}, picks(tb, 20, "echo", nil, []string{"a", "b", "z"}))
}

func TestPickRandomAmongTies(t *testing.T) {
	tb, _ := newTable("")
	nodes := []string{"n1", "n2", "n3", "n4"}
	for _, n := range nodes {
		require.True(t, tb.ApplyHello(hello(n, 1, 1)))
		tb.ApplyHeartbeat(heartbeat(n, 1, 1, 1))
	}
	require.True(t, tb.ApplyHello(hello("busy", 1, 1)))
	tb.ApplyHeartbeat(heartbeat("busy", 1, 1, 2))

	// Each of 4 tied nodes should get about 1000 of 4000 picks; missing one
	// entirely has probability 4*(3/4)^4000.
	got := picks(tb, 4000, "echo", nil, nil)
	assert.ElementsMatch(t, nodes, keys(got))
	for _, n := range nodes {
		assert.Greater(t, got[n], 700, "picks %v are far from uniform", got)
	}
}

func TestPeersAndAdvertisedURLs(t *testing.T) {
	tb, c := newTable("")
	h3 := hello("n3", 1, 1)
	h3.AdvertisedURLs = []string{"nats://c:4222", "nats://a:4222"}
	h1 := hello("n1", 1, 1)
	h1.AdvertisedURLs = []string{"nats://a:4222", "nats://b:4222"}
	h2 := hello("n2", 1, 1)
	h2.AdvertisedURLs = []string{"nats://dead:4222"}
	h4 := hello("n4", 1, 1)
	h4.AdvertisedURLs = []string{"nats://gone:4222"}
	for _, h := range []*schema.Hello{h3, h1, h2, h4} {
		require.True(t, tb.ApplyHello(h))
	}
	assert.Equal(t, []string{"nats://a:4222", "nats://b:4222", "nats://c:4222", "nats://dead:4222", "nats://gone:4222"},
		tb.AdvertisedURLs())

	c.Advance(deadAfter)
	tb.ApplyHeartbeat(heartbeat("n1", 1, 1, 0))
	tb.ApplyHeartbeat(heartbeat("n3", 1, 1, 0))
	tb.ApplyHeartbeat(heartbeat("n4", 1, 1, 0))
	c.Advance(time.Second)
	require.True(t, tb.ApplyGoodbye(goodbye("n4", 1)))

	assert.Equal(t, []string{"nats://a:4222", "nats://b:4222", "nats://c:4222"}, tb.AdvertisedURLs(),
		"only live nodes' URLs, deduplicated and sorted")

	peers := tb.Peers()
	ids := make([]string, len(peers))
	alive := map[string]bool{}
	for i, p := range peers {
		ids[i] = p.Hello.Node
		alive[p.Hello.Node] = p.Alive
	}
	assert.Equal(t, []string{"n1", "n2", "n3"}, ids, "sorted, without the node that said goodbye")
	assert.Equal(t, map[string]bool{"n1": true, "n2": false, "n3": true}, alive)
}

func TestChanged(t *testing.T) {
	tb, c := newTable("")
	ch := tb.Changed()
	assert.Equal(t, ch, tb.Changed(), "the same channel until a change")

	require.True(t, tb.ApplyHello(hello("n1", 1, 1)))
	assert.True(t, closed(ch))

	for _, tc := range []struct {
		name   string
		change func()
		want   bool
	}{
		{"heartbeat of a live node", func() { tb.ApplyHeartbeat(heartbeat("n1", 1, 1, 3)) }, false},
		{"older hello", func() { tb.ApplyHello(hello("n1", 0, 1)) }, false},
		{"newer version", func() { tb.ApplyHello(hello("n1", 1, 2)) }, true},
		{"mark dead", func() { tb.MarkDead("n1") }, true},
		{"revive", func() { tb.ApplyHeartbeat(heartbeat("n1", 1, 2, 0)) }, true},
		{"begin", func() { tb.Begin("n1") }, false},
		{"goodbye", func() { tb.ApplyGoodbye(goodbye("n1", 1)) }, true},
		{"restart", func() { tb.ApplyHello(hello("n1", 2, 1)) }, true},
		{"prune nothing", func() { tb.Prune() }, false},
		{"forget", func() { c.Advance(2 * forgetAfter); tb.Prune() }, true},
	} {
		ch := tb.Changed()
		tc.change()
		assert.Equal(t, tc.want, closed(ch), tc.name)
	}
}

// TestWatch: a watch is woken by the changes that may give it a route (a
// node offering its function with its locs added, re-announced or back to
// life) and by nothing else; stop ends it.
func TestWatch(t *testing.T) {
	tb, c := newTable("")
	woken := map[string]int{}
	stopNever := tb.Watch("never", nil, func() { woken["never"]++ })
	stopGPU := tb.Watch("late", []string{"gpu"}, func() { woken["late gpu"]++ })
	stopAny := tb.Watch("late", nil, func() { woken["late"]++ })
	assert.Equal(t, 3, tb.Watching())

	for _, tc := range []struct {
		name   string
		change func()
		want   map[string]int
	}{
		{"a node offering something else", func() { tb.ApplyHello(hello("n1", 1, 1)) }, map[string]int{}},
		{"late without the loc", func() { tb.ApplyHello(hello("n2", 1, 1, map[string][]string{"late": {"cpu"}})) }, map[string]int{"late": 1}},
		{"a heartbeat of a live node", func() { tb.ApplyHeartbeat(heartbeat("n2", 1, 1, 0)) }, map[string]int{}},
		{"late with the loc", func() { tb.ApplyHello(hello("n3", 1, 1, map[string][]string{"late": {"cpu", "gpu"}})) }, map[string]int{"late gpu": 1, "late": 1}},
		{"marked dead", func() { tb.MarkDead("n3") }, map[string]int{}},
		{"back to life", func() { tb.ApplyHeartbeat(heartbeat("n3", 1, 1, 0)) }, map[string]int{"late gpu": 1, "late": 1}},
		{"dead of silence", func() { c.Advance(deadAfter + time.Millisecond); tb.Prune() }, map[string]int{}},
		{"its hello again", func() { tb.ApplyHello(hello("n3", 1, 1, map[string][]string{"late": {"cpu", "gpu"}})) }, map[string]int{"late gpu": 1, "late": 1}},
		{"goodbye", func() { tb.ApplyGoodbye(goodbye("n3", 1)) }, map[string]int{}},
		{"restart", func() { tb.ApplyHello(hello("n3", 2, 1, map[string][]string{"late": {"gpu"}})) }, map[string]int{"late gpu": 1, "late": 1}},
	} {
		clear(woken)
		tc.change()
		assert.Equal(t, tc.want, woken, tc.name)
	}

	stopGPU()
	stopGPU() // idempotent
	clear(woken)
	tb.ApplyHello(hello("n4", 1, 1, map[string][]string{"late": {"gpu"}, "never": {}}))
	assert.Equal(t, map[string]int{"late": 1, "never": 1}, woken, "after stop")
	stopNever()
	stopAny()
	assert.Equal(t, 0, tb.Watching())
}

func TestTrack(t *testing.T) {
	tb, c := newTable("")
	require.True(t, tb.ApplyHello(hello("n1", 1, 1)))
	require.True(t, tb.ApplyHello(hello("n2", 1, 1)))

	ctx1, cancel1 := context.WithCancelCause(context.Background())
	defer cancel1(nil)
	ctx2, cancel2 := context.WithCancelCause(context.Background())
	defer cancel2(nil)
	done1 := tb.Track("n1", cancel1)
	done2 := tb.Track("n2", cancel2)
	assert.Equal(t, int64(1), get(t, tb, "n1").Outstanding, "a tracked request is outstanding")

	tb.MarkDead("n1")
	assert.ErrorIs(t, context.Cause(ctx1), membership.ErrNodeLost)
	assert.NoError(t, ctx2.Err())
	done1()
	done1()
	assert.Zero(t, get(t, tb, "n1").Outstanding)

	// Silence noticed by Prune loses the requests in flight.
	c.Advance(deadAfter)
	tb.ApplyHeartbeat(heartbeat("n1", 1, 1, 0))
	tb.Prune()
	assert.NoError(t, ctx2.Err(), "not lost at exactly DeadAfter")
	c.Advance(time.Nanosecond)
	tb.Prune()
	assert.ErrorIs(t, context.Cause(ctx2), membership.ErrNodeLost)
	done2()

	// A request done before the node is lost is not cancelled.
	ctx3, cancel3 := context.WithCancelCause(context.Background())
	defer cancel3(nil)
	tb.Track("n1", cancel3)()
	tb.MarkDead("n1")
	assert.NoError(t, ctx3.Err())
}

// A newer incarnation of a node loses the requests sent before it started
// (they went to the old process), keeps those sent since, and leaves a
// draining process's requests alone.
func TestTrackReplacedIncarnation(t *testing.T) {
	tb, c := newTable("")
	require.True(t, tb.ApplyHello(hello("n1", c.Now().UnixMilli(), 1)))
	track := func() context.Context {
		ctx, cancel := context.WithCancelCause(context.Background())
		t.Cleanup(func() { cancel(nil) })
		tb.Track("n1", cancel)
		return ctx
	}
	old := track()
	c.Advance(time.Second)
	nearRestart := track() // within the clock-skew allowance of its start
	c.Advance(100 * time.Millisecond)
	restart := c.Now().UnixMilli()
	c.Advance(100 * time.Millisecond)
	sentToNew := track() // after the new process started, before its hello
	require.True(t, tb.ApplyHello(hello("n1", restart, 1)))
	assert.ErrorIs(t, context.Cause(old), membership.ErrNodeLost)
	assert.NoError(t, nearRestart.Err(), "it may have gone to the new process")
	assert.NoError(t, sentToNew.Err())

	// A newer version of the same incarnation loses nothing.
	require.True(t, tb.ApplyHello(hello("n1", restart, 2)))
	assert.NoError(t, sentToNew.Err())

	// After goodbye the old process still answers what it took.
	c.Advance(time.Second)
	draining := track()
	require.True(t, tb.ApplyGoodbye(&schema.Goodbye{Cluster: "default", Node: "n1", Incarnation: restart}))
	c.Advance(time.Second)
	require.True(t, tb.ApplyHello(hello("n1", c.Now().UnixMilli(), 1)))
	assert.NoError(t, draining.Err())
}

// With SelfLoad, Self is scored by its real load (steps from every planner),
// so a busy planner node routes to an idle peer.
func TestPickSelfLoad(t *testing.T) {
	var selfLoad atomic.Int64
	tb := membership.New(membership.Config{Self: "n1", SelfLoad: selfLoad.Load})
	require.True(t, tb.ApplyHello(hello("n1", 1, 1)))
	require.True(t, tb.ApplyHello(hello("n2", 1, 1)))
	tb.ApplyHeartbeat(heartbeat("n2", 1, 1, 1))
	selfLoad.Store(0)
	node, ok := tb.Pick("echo", nil, nil)
	require.True(t, ok)
	require.Equal(t, "n1", node, "idle self wins")
	selfLoad.Store(20)
	node, _ = tb.Pick("echo", nil, nil)
	require.Equal(t, "n2", node, "busy self loses to a peer running 1")
}

// Changed also fires when Prune finds a node dead of silence, once.
func TestChangedOnSilence(t *testing.T) {
	tb, c := newTable("")
	require.True(t, tb.ApplyHello(hello("n1", 1, 1)))
	ch := tb.Changed()
	tb.Prune()
	select {
	case <-ch:
		t.Fatal("nothing changed yet")
	default:
	}
	c.Advance(deadAfter + time.Millisecond)
	tb.Prune()
	select {
	case <-ch:
	default:
		t.Fatal("a node dead of silence is a change")
	}
	ch = tb.Changed()
	tb.Prune()
	select {
	case <-ch:
		t.Fatal("the same death is not a change twice")
	default:
	}
	tb.ApplyHeartbeat(heartbeat("n1", 1, 1, 0))
	select {
	case <-ch:
	default:
		t.Fatal("heard again is a change")
	}
}

func TestStates(t *testing.T) {
	tb, c := newTable("")
	states := func() [3]int {
		a, d, x := tb.States()
		return [3]int{a, d, x}
	}
	assert.Equal(t, [3]int{0, 0, 0}, states())
	require.True(t, tb.ApplyHello(hello("n1", 1, 1)))
	require.True(t, tb.ApplyHello(hello("n2", 1, 1)))
	require.True(t, tb.ApplyHello(hello("n3", 1, 1)))
	assert.Equal(t, [3]int{3, 0, 0}, states())
	require.True(t, tb.ApplyGoodbye(goodbye("n1", 1)))
	assert.Equal(t, [3]int{2, 1, 0}, states())
	c.Advance(deadAfter)
	tb.ApplyHeartbeat(heartbeat("n2", 1, 1, 0))
	c.Advance(time.Nanosecond)
	assert.Equal(t, [3]int{1, 1, 1}, states(), "n3 fell silent")
	tb.MarkDead("n2")
	assert.Equal(t, [3]int{0, 1, 2}, states())
}

func TestPickNear(t *testing.T) {
	tb, c := newTable("me")
	require.True(t, tb.ApplyHello(hello("me", 1, 1)))
	require.True(t, tb.ApplyHello(hello("n1", 1, 1, map[string][]string{"predict": {"gpu"}})))
	require.True(t, tb.ApplyHello(hello("n2", 1, 1, map[string][]string{"predict": {"gpu"}})))
	near := func(fun string, locs, exclude []string, n string) string {
		got, ok := tb.PickNear(fun, locs, exclude, n)
		if !ok {
			return ""
		}
		return got
	}
	// Self wins Pick's ties; the node holding the inputs wins over it.
	require.Equal(t, "me", near("echo", nil, nil, ""))
	for range 20 {
		require.Equal(t, "n2", near("echo", nil, nil, "n2"))
		require.Equal(t, "n1", near("predict", []string{"gpu"}, nil, "n1"))
	}
	require.Equal(t, "me", near("echo", nil, []string{"n2"}, "n2"), "excluded")
	require.Equal(t, "me", near("echo", nil, nil, "unknown"))
	require.Equal(t, "", near("predict", []string{"cpu"}, nil, "n1"), "nobody qualifies")
	for range 20 {
		require.Equal(t, "n2", near("predict", []string{"gpu"}, []string{"n1"}, "me"), "me lacks predict")
	}

	// Load: near takes the step up to twice the least load plus two.
	tb.ApplyHeartbeat(heartbeat("n2", 1, 1, 2))
	require.Equal(t, "n2", near("echo", nil, nil, "n2"), "2 ≤ 2·0+2")
	tb.Begin("n2")
	require.Equal(t, "me", near("echo", nil, nil, "n2"), "3 > 2·0+2")
	tb.ApplyHeartbeat(heartbeat("n1", 1, 1, 1))
	tb.Begin("me")
	require.Equal(t, "n2", near("echo", nil, nil, "n2"), "3 ≤ 2·1+2")
	tb.End("n2")
	tb.End("me")

	// A node that said goodbye or went silent is not near.
	require.True(t, tb.ApplyGoodbye(goodbye("n2", 1)))
	require.Equal(t, "me", near("echo", nil, nil, "n2"))
	c.Advance(deadAfter + time.Second)
	require.Equal(t, "me", near("echo", nil, nil, "n1"), "n1 is silent")

	require.True(t, membership.Near(4, 1))
	require.False(t, membership.Near(5, 1))
	require.True(t, membership.Near(2, -3), "a negative least counts as none")
}

// Policy returns what a node's latest hello advertises for a function,
// also after its goodbye, and nil for anything else.
func TestPolicy(t *testing.T) {
	tb, _ := newTable("")
	h := hello("n1", 10, 1, map[string][]string{"flaky": {}})
	h.Retry = map[string]schema.RetryPolicy{"flaky": {Attempts: 5, InitialBackoffMS: 100, Multiplier: 2}}
	require.True(t, tb.ApplyHello(h))
	assert.Equal(t, &schema.RetryPolicy{Attempts: 5, InitialBackoffMS: 100, Multiplier: 2}, tb.Policy("n1", "flaky"))
	assert.Nil(t, tb.Policy("n1", "echo"), "no policy")
	assert.Nil(t, tb.Policy("n2", "flaky"), "unknown node")

	// The returned policy is a copy.
	tb.Policy("n1", "flaky").Attempts = 99
	assert.Equal(t, int64(5), tb.Policy("n1", "flaky").Attempts)

	// A newer hello replaces the policies.
	h2 := hello("n1", 10, 2, map[string][]string{"flaky": {}})
	h2.Retry = map[string]schema.RetryPolicy{"flaky": {Attempts: 2}}
	require.True(t, tb.ApplyHello(h2))
	assert.Equal(t, int64(2), tb.Policy("n1", "flaky").Attempts)

	require.True(t, tb.ApplyGoodbye(goodbye("n1", 10)))
	assert.Equal(t, int64(2), tb.Policy("n1", "flaky").Attempts, "kept after goodbye for the steps in flight")
}
