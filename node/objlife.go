package node

import (
	"container/heap"
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mpreg/mpreg/objref"
	"github.com/mpreg/mpreg/planner"
	"github.com/mpreg/mpreg/schema"
)

// The lifetime of the objects of a request (docs/PROTOCOL.md §4.7): the
// planner that runs a request records every step result that comes back
// as a reference (from its own steps, other nodes' and delegated runs).
// When the request ends, after its reply, the objects that are not among
// the results sent to the caller are deleted at once, and those that are
// after Objects.ResultTTL. References a caller passed in are the caller's.
// The bucket's max age (Objects.TTL) removes whatever is left behind.

// objSet collects the objects a request's steps stored.
type objSet struct {
	mu    sync.Mutex
	names []string
}

// add records the object v names, when v is a reference.
func (s *objSet) add(v any) {
	if !objref.IsRef(v) {
		return
	}
	r, err := objref.Parse(v.(map[string]any)[objref.KeyObj])
	if err != nil {
		return
	}
	s.mu.Lock()
	s.names = append(s.names, r.Name)
	s.mu.Unlock()
}

type objSetKey struct{}

// objCtx is a request's context that carries its objSet, for the
// executors below: a field of the request's rpcCall, so that it costs the
// request no allocation (context.WithValue would).
type objCtx struct {
	context.Context
	set *objSet
}

// Value returns the objSet for objSetKey, else what the context holds.
func (c *objCtx) Value(key any) any {
	if _, ok := key.(objSetKey); ok {
		return c.set
	}
	return c.Context.Value(key)
}

// recordObjects wraps a runner's Executor: the references its steps
// return are recorded in the request's objSet.
type recordObjects struct{ planner.Executor }

func (r recordObjects) Exec(ctx context.Context, node string, c *planner.Call) (planner.Result, error) {
	res, err := r.Executor.Exec(ctx, node, c)
	if s, ok := ctx.Value(objSetKey{}).(*objSet); ok {
		s.add(res.Value)
	}
	return res, err
}

// recordDelegated wraps a runner's Delegator: the references among a
// delegated run's results are recorded in the request's objSet (the
// delegate deletes the run's intermediates itself).
type recordDelegated struct{ planner.Delegator }

func (r recordDelegated) Delegate(ctx context.Context, node string, req *schema.Request) (*schema.Response, error) {
	resp, err := r.Delegator.Delegate(ctx, node, req)
	if s, ok := ctx.Value(objSetKey{}).(*objSet); ok && resp != nil {
		for _, v := range resp.Results {
			s.add(v)
		}
	}
	return resp, err
}

var (
	_ planner.Executor  = recordObjects{}
	_ planner.Delegator = recordDelegated{}
)

// Bounds of a node's deleter.
const (
	// deleteWorkers bounds the deletes in flight at once.
	deleteWorkers = 4
	// deleteTimeout bounds one delete.
	deleteTimeout = 5 * time.Second
)

// deleter deletes objects of the bucket when they are due, owned by the
// node. It holds at most max deletes pending: past that the one due
// soonest is dropped and left to the bucket's max age (logged, counted in
// dropped), so that no result a caller may still read is deleted early.
// On Close the pending deletes are left to the bucket's max age; Drain
// first does those already due (a request's intermediates).
type deleter struct {
	*env
	objs *objects
	ttl  time.Duration // Objects.ResultTTL
	max  int           // Objects.MaxPendingDeletes
	wake chan struct{} // cap 1: the earliest due time may have changed
	busy chan struct{} // cap 1: held while a batch of deletes runs

	mu      sync.Mutex
	pending dueHeap

	deleted, dropped atomic.Int64
}

func newDeleter(e *env, o *objects) *deleter {
	return &deleter{env: e, objs: o, ttl: e.cfg.Objects.ResultTTL, max: e.cfg.Objects.MaxPendingDeletes, wake: make(chan struct{}, 1),
		busy: make(chan struct{}, 1)}
}

// release schedules the deletes of a request that has ended: the objects
// of set that are among results (what the caller was sent) after the
// result TTL, the others at once. It does not wait.
func (d *deleter) release(id string, set *objSet, results map[string]any) {
	set.mu.Lock()
	names := set.names
	set.mu.Unlock()
	if len(names) == 0 {
		return
	}
	final := map[string]bool{}
	for _, v := range results {
		if objref.IsRef(v) {
			if r, err := objref.Parse(v.(map[string]any)[objref.KeyObj]); err == nil {
				final[r.Name] = true
			}
		}
	}
	now := time.Now()
	if d.log.Enabled(context.Background(), slog.LevelDebug) {
		d.log.Debug("request objects released", "request_id", id, "delete_now", len(names)-len(final), "results", len(final),
			"result_ttl", d.ttl)
	}
	d.mu.Lock()
	for _, name := range names {
		due := now
		if final[name] {
			due = now.Add(d.ttl)
		}
		d.push(name, due)
	}
	d.mu.Unlock()
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// push adds a pending delete, dropping the one due soonest past the bound.
func (d *deleter) push(name string, due time.Time) {
	if len(d.pending) >= d.max {
		gone := heap.Pop(&d.pending).(dueDelete)
		d.dropped.Add(1)
		if ok, held := d.logs.Allow("object delete dropped"); ok {
			d.log.Warn("too many object deletes pending: one is left to the bucket's max age", "object", gone.name,
				"max_pending_deletes", d.max, "dropped_since_last_log", held)
		}
	}
	heap.Push(&d.pending, dueDelete{name: name, due: due})
}

// due takes the pending deletes due by now, at most n; and says when the
// next one is due (zero when none is pending).
func (d *deleter) due(now time.Time, n int) ([]string, time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var names []string
	for len(d.pending) > 0 && len(names) < n && !d.pending[0].due.After(now) {
		names = append(names, heap.Pop(&d.pending).(dueDelete).name)
	}
	if len(d.pending) == 0 {
		return names, time.Time{}
	}
	return names, d.pending[0].due
}

// run deletes what is due, deleteWorkers at a time, until quit is closed.
// The node runs it on an owned goroutine.
func (d *deleter) run(ctx context.Context, quit <-chan struct{}) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		select {
		case d.busy <- struct{}{}:
		case <-quit:
			return
		}
		names, next := d.due(time.Now(), deleteWorkers)
		if len(names) > 0 {
			d.deleteAll(ctx, names)
		}
		<-d.busy
		if len(names) > 0 {
			continue
		}
		wait := time.Hour
		if !next.IsZero() {
			wait = max(time.Until(next), 0)
		}
		timer.Reset(wait)
		select {
		case <-quit:
			return
		case <-d.wake:
		case <-timer.C:
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

// flush deletes every pending delete already due, and waits for those in
// flight, until none is left or ctx ends (Drain).
func (d *deleter) flush(ctx context.Context) {
	for {
		select {
		case d.busy <- struct{}{}:
		case <-ctx.Done():
			return
		}
		names, _ := d.due(time.Now(), deleteWorkers)
		if len(names) > 0 {
			d.deleteAll(ctx, names)
		}
		<-d.busy
		if len(names) == 0 || ctx.Err() != nil {
			return
		}
	}
}

// deleteAll deletes names at once, each on its own goroutine, and waits
// for them.
func (d *deleter) deleteAll(ctx context.Context, names []string) {
	var wg sync.WaitGroup
	for _, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.delete(ctx, name)
		}()
	}
	wg.Wait()
}

// delete deletes one object of the bucket, and this node's cached copy.
// A missing object is not an error: the caller may have deleted it.
func (d *deleter) delete(ctx context.Context, name string) {
	d.objs.cache.remove(name)
	b := d.objs.bucketStore.Load()
	if b == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, deleteTimeout)
	defer cancel()
	err := b.store.Delete(ctx, name)
	switch {
	case err == nil:
		d.deleted.Add(1)
	case errors.Is(err, jetstream.ErrObjectNotFound):
	case ctx.Err() != nil && errors.Is(err, context.Canceled):
	default:
		if ok, held := d.logs.Allow("object delete failed"); ok {
			d.log.Warn("deleting an object failed: the bucket's max age removes it", "object", name, "error", err,
				"failed_since_last_log", held)
		}
	}
}

// dueDelete is a pending delete.
type dueDelete struct {
	name string
	due  time.Time
}

// dueHeap is the pending deletes, the one due soonest first.
type dueHeap []dueDelete

func (h dueHeap) Len() int           { return len(h) }
func (h dueHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h dueHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *dueHeap) Push(x any)        { *h = append(*h, x.(dueDelete)) }
func (h *dueHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
