package membership_test

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/mpreg/mpreg/membership"
	"github.com/mpreg/mpreg/schema"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// clock is a fake clock for membership.Config.Now.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Unix(1_732_570_000, 0)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

const (
	deadAfter   = 3 * time.Second
	forgetAfter = 30 * time.Second
)

// newTable returns a table with a fake clock, the default periods and the
// given self id.
func newTable(self string) (*membership.Table, *clock) {
	c := newClock()
	return membership.New(membership.Config{Self: self, DeadAfter: deadAfter, ForgetAfter: forgetAfter, Now: c.Now}), c
}

// hello returns a hello for node offering echo (no locs) and the given
// extra functions.
func hello(node string, inc, ver int64, funs ...map[string][]string) *schema.Hello {
	f := map[string][]string{"echo": {}}
	for _, m := range funs {
		for k, v := range m {
			f[k] = v
		}
	}
	return &schema.Hello{
		Cluster: "default", Node: node, Incarnation: inc, Version: ver, Funs: f,
		Codecs: []string{"application/msgpack", "application/json"}, Proto: 1,
	}
}

func heartbeat(node string, inc, ver, inflight int64) *schema.Heartbeat {
	return &schema.Heartbeat{Cluster: "default", Node: node, Incarnation: inc, Version: ver,
		Load: schema.Load{Inflight: inflight, Limit: 100}}
}

func goodbye(node string, inc int64) *schema.Goodbye {
	return &schema.Goodbye{Cluster: "default", Node: node, Incarnation: inc}
}

// get returns the peer, failing the test when the table does not hold it.
func get(t *testing.T, tb *membership.Table, node string) membership.Peer {
	t.Helper()
	p, ok := tb.Get(node)
	require.True(t, ok, "table does not hold %s", node)
	return p
}

// closed reports whether ch is closed.
func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// picks returns how often each node was picked in n picks.
func picks(tb *membership.Table, n int, fun string, locs, exclude []string) map[string]int {
	out := map[string]int{}
	for range n {
		node, ok := tb.Pick(fun, locs, exclude)
		if !ok {
			out[""]++
			continue
		}
		out[node]++
	}
	return out
}
