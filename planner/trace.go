package planner

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"time"

	"github.com/mpreg/mpreg/schema"
)

// tracer collects a request's trace: one entry per step attempt.
type tracer struct {
	received time.Time
	keep     bool                    // for the Outcome's trace
	on       func(schema.TraceEntry) // each attempt as it ends, or nil
	mu       sync.Mutex
	entries  []schema.TraceEntry
	// truncated: a delegate's trace came without some of its entries.
	truncated bool
}

// attempt runs one attempt of call on node through x, recording it when t
// is not nil, with the Timing x returned.
func (t *tracer) attempt(ctx context.Context, call *Call, node string, n int, x Executor) (any, error) {
	if t == nil {
		res, err := x.Exec(ctx, node, call)
		return res.Value, err
	}
	start := time.Now()
	res, err := x.Exec(ctx, node, call)
	code := schema.OutcomeOK
	if err != nil {
		code = schema.Outcome(stepError(ctx, err))
	}
	t.add(schema.TraceEntry{Step: call.Step, Fun: call.Fun, Node: node, Attempt: int64(n),
		StartUS: start.Sub(t.received).Microseconds(), QueueUS: res.Timing.Queue.Microseconds(), RunUS: res.Timing.Run.Microseconds(),
		FetchedBytes: res.Timing.Fetched, Code: code})
	return res.Value, err
}

// add records one attempt's entry.
func (t *tracer) add(e schema.TraceEntry) {
	if t.keep {
		t.mu.Lock()
		t.entries = append(t.entries, e)
		t.mu.Unlock()
	}
	if t.on != nil {
		t.on(e)
	}
}

// cut records that entries of the trace were left out by a delegate.
func (t *tracer) cut() {
	t.mu.Lock()
	t.truncated = true
	t.mu.Unlock()
}

// wasCut reports whether cut was called.
func (t *tracer) wasCut() bool {
	if t == nil {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.keep && t.truncated
}

// trace returns the entries in the order the attempts started.
func (t *tracer) trace() []schema.TraceEntry {
	if t == nil || !t.keep {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	out := append([]schema.TraceEntry{}, t.entries...)
	slices.SortStableFunc(out, func(a, b schema.TraceEntry) int { return cmp.Compare(a.StartUS, b.StartUS) })
	return out
}
