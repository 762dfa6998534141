package demo

import (
	"fmt"
	"sync"
	"time"

	"github.com/mpreg/mpreg/node"
	"github.com/mpreg/mpreg/schema"
)

// The functions that count: tally and flaky keep, per node, a count by
// key, to show what runs where and how often (at-least-once steps, retry
// policies).

// Bounds of the counters of one node.
const (
	// MaxCounterKeys bounds the keys one node counts, tally's and flaky's
	// together: a new key past it is INVALID_ARGUMENT.
	MaxCounterKeys = 10_000
	// maxCounterKey bounds a key, in bytes.
	maxCounterKey = 256
	// maxFailures bounds flaky's failures.
	maxFailures = 1_000_000
)

// FlakyPolicy is the retry policy flaky is registered with: 5 attempts,
// 100 ms before the first retry, twice as long before each next one, no
// jitter.
var FlakyPolicy = node.RetryPolicy{Attempts: 5, InitialBackoff: 100 * time.Millisecond, Multiplier: 2}

// counters are a node's counts by key, one map per function.
type counters struct {
	mu     sync.Mutex
	tally  map[string]int64
	flaky  map[string]int64
	usedBy int // keys of both maps
}

func newCounters() *counters {
	return &counters{tally: map[string]int64{}, flaky: map[string]int64{}}
}

// add adds one to m[key] and returns it, within the bounds.
func (c *counters) add(fun string, m map[string]int64, key string) (int64, error) {
	if len(key) > maxCounterKey {
		return 0, &schema.Error{Code: schema.CodeInvalidArgument,
			Message: fmt.Sprintf("%s: key is longer than %d bytes", fun, maxCounterKey),
			Details: map[string]any{"param": "key", "max": int64(maxCounterKey)}}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	n, ok := m[key]
	if !ok {
		if c.usedBy >= MaxCounterKeys {
			return 0, &schema.Error{Code: schema.CodeInvalidArgument,
				Message: fmt.Sprintf("%s: this node already counts %d keys, its most; use a key it knows", fun, MaxCounterKeys),
				Details: map[string]any{"param": "key", "max": int64(MaxCounterKeys)}}
		}
		c.usedBy++
	}
	n++
	m[key] = n
	return n, nil
}

// Tally is tally(key): adds one to this node's count for key and returns
// the new count.
func (c *counters) Tally(key string) (int64, error) { return c.add("tally", c.tally, key) }

// Flaky is flaky(key, failures): FUNCTION_ERROR on its first failures
// calls with key on this node, then the number of calls so far.
func (c *counters) Flaky(key string, failures int64) (int64, error) {
	if failures < 0 || failures > maxFailures {
		return 0, &schema.Error{Code: schema.CodeInvalidArgument,
			Message: fmt.Sprintf("flaky: failures must be 0 to %d, got %d", maxFailures, failures),
			Details: map[string]any{"param": "failures"}}
	}
	n, err := c.add("flaky", c.flaky, key)
	if err != nil {
		return 0, err
	}
	if n <= failures {
		return 0, fmt.Errorf("flaky: call %d of %d that fail for key %s", n, failures, schema.Clip(key))
	}
	return n, nil
}
