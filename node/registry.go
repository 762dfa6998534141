package node

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/mpreg/mpreg/schema"
)

// RawFunc is a function that takes its decoded arguments as they came: the
// value model of package codec. Use it for dynamic functions.
type RawFunc func(ctx context.Context, args []any, kwargs map[string]any) (any, error)

// Invocation names one call of a registered function on a node.
type Invocation struct {
	Fun string // the function
	ID  string // the exec id ("<request id>/<step>"), or the request id of a direct call
}

// Interceptor wraps every call of a registered function on a node, for its
// own planner's steps and for peers' exec requests alike: the seam for
// metrics, tracing and authorization. It runs after admission, inside the
// node's recover boundary, with the step's context; it calls next to run
// the function, or returns an error instead (a *schema.Error keeps its
// code, as a function's own does).
type Interceptor func(ctx context.Context, inv Invocation, args []any, kwargs map[string]any, next RawFunc) (any, error)

// FuncOption configures one registered function.
type FuncOption func(*funcOpts)

type funcOpts struct {
	locs       []string
	params     []string
	required   []string
	idempotent bool
	retryAfter time.Duration
	inline     bool
	retry      *RetryPolicy
}

// WithLocs adds locs (resource tags) to the function, on top of the node's.
func WithLocs(locs ...string) FuncOption {
	return func(o *funcOpts) { o.locs = append(o.locs, locs...) }
}

// WithParams names the function's parameters (after the optional
// context.Context), in order, so that callers may pass them as kwargs.
// Without names a typed function takes positional arguments only, unless its
// only parameter is a struct (see Register).
func WithParams(names ...string) FuncOption {
	return func(o *funcOpts) { o.params = names }
}

// Required says that the parameters named (names given to WithParams) must
// be passed, positionally or by name; null counts as passed. A parameter of
// pointer, interface, slice or map type may otherwise be left out and gets
// nil, so that a function cannot tell a missing argument from null: with
// Required, a call that leaves one out is INVALID_ARGUMENT "f: missing
// argument p", as for a parameter of any other type.
func Required(names ...string) FuncOption {
	return func(o *funcOpts) { o.required = append(o.required, names...) }
}

// RetryAfter marks the function idempotent and says how long one attempt
// normally takes at most: a planner whose attempt on another node has not
// answered within d tries the next eligible node (at most twice), instead of
// waiting for the whole request's budget. The late attempt is cancelled.
func RetryAfter(d time.Duration) FuncOption {
	return func(o *funcOpts) { o.idempotent, o.retryAfter = true, d }
}

// RetryPolicy says how a planner tries again a step of the function
// that failed (docs/PROTOCOL.md §8): after FUNCTION_ERROR,
// FUNCTION_PANIC, NODE_UNAVAILABLE or a TIMEOUT of the step itself, up to
// Attempts attempts in all, the n-th retry after InitialBackoff ×
// Multiplier^(n-1), at most MaxBackoff, give or take Jitter of it at
// random; never past the request's deadline. Durations count in whole
// milliseconds.
type RetryPolicy struct {
	// Attempts is the number of attempts in all, the first included: 1
	// (no retry) to 100.
	Attempts int
	// InitialBackoff is the wait before the first retry, 0 to a day.
	InitialBackoff time.Duration
	// MaxBackoff caps every wait: 0 (a day) or InitialBackoff to a day.
	MaxBackoff time.Duration
	// Multiplier grows the wait retry by retry: 1 to 100; 0 is 1.
	Multiplier float64
	// Jitter is the fraction of each wait added or taken away at random:
	// 0 to 1.
	Jitter float64
}

// wire is p as a hello advertises it.
func (p RetryPolicy) wire() schema.RetryPolicy {
	return schema.RetryPolicy{Attempts: int64(p.Attempts), InitialBackoffMS: p.InitialBackoff.Milliseconds(),
		MaxBackoffMS: p.MaxBackoff.Milliseconds(), Multiplier: p.Multiplier, Jitter: p.Jitter}
}

// WithRetry gives the function a retry policy, which the node advertises
// in its hello (hello.retry): every planner follows it for the steps of
// the function that ran here, whatever the request. Register refuses a
// policy out of its bounds (ErrInvalidConfig). The function must then
// bear being run again: a retried step may have had effects before it
// failed.
func WithRetry(p RetryPolicy) FuncOption {
	return func(o *funcOpts) { o.retry = &p }
}

// Idempotent marks the function safe to run twice, so that a step whose node
// was lost mid-execution may be retried elsewhere.
func Idempotent() FuncOption { return func(o *funcOpts) { o.idempotent = true } }

// Inline says the function returns quickly and never blocks (no I/O, no
// locks held long, no sleeping): the node may then run it on the goroutine
// that reads its exec subscription, saving a goroutine hand-off per call.
// While an inline function runs, the node's other exec messages wait, so
// use it only for functions that take microseconds. Its context, deadline,
// panic recovery and run slot are as for any function, but nothing answers
// for it before it returns: one that outlives its deadline is answered
// TIMEOUT when it does.
func Inline() FuncOption { return func(o *funcOpts) { o.inline = true } }

// fn is one registered function.
type fn struct {
	name       string
	locs       []string // the function's own locs (without the node's)
	idempotent bool
	retryAfter time.Duration
	retry      schema.RetryPolicy // Attempts 0: none
	inline     bool
	call       RawFunc
	readsCtx   bool      // call reads its context (StepKey), see wrapCtx
	blobs      blobSlots // the parameters that take a *Blob
}

// registry maps names to functions.
type registry struct {
	mu    sync.RWMutex
	funcs map[string]*fn
}

func (r *registry) get(name string) (*fn, bool) {
	r.mu.RLock()
	f, ok := r.funcs[name]
	r.mu.RUnlock()
	return f, ok
}

func (r *registry) put(f *fn) {
	r.mu.Lock()
	r.funcs[f.name] = f
	r.mu.Unlock()
}

func (r *registry) remove(name string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.funcs[name]
	delete(r.funcs, name)
	return ok
}

// funs returns each function's effective locs: nodeLocs plus its own.
func (r *registry) funs(nodeLocs []string) map[string][]string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make(map[string][]string, len(r.funcs))
	for name, f := range r.funcs {
		l := append(slices.Clone(nodeLocs), f.locs...)
		sort.Strings(l)
		out[name] = slices.Compact(l)
		if out[name] == nil {
			out[name] = []string{}
		}
	}
	return out
}

// idempotent returns the sorted names of the functions marked Idempotent.
func (r *registry) idempotent() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var out []string
	for name, f := range r.funcs {
		if f.idempotent {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// retryAfter returns the RetryAfter of the functions that have one, in ms.
func (r *registry) retryAfter() map[string]int64 {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var out map[string]int64
	for name, f := range r.funcs {
		if ms := f.retryAfter.Milliseconds(); ms > 0 {
			if out == nil {
				out = map[string]int64{}
			}
			out[name] = ms
		}
	}
	return out
}

// retry returns the retry policies of the functions that have one (of
// more than one attempt), for the hello.
func (r *registry) retry() map[string]schema.RetryPolicy {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var out map[string]schema.RetryPolicy
	for name, f := range r.funcs {
		if f.retry.Attempts > 1 {
			if out == nil {
				out = map[string]schema.RetryPolicy{}
			}
			out[name] = f.retry
		}
	}
	return out
}

// checkRetry checks the policy of WithRetry, when one was given.
func checkRetry(name string, p *RetryPolicy) (schema.RetryPolicy, error) {
	if p == nil {
		return schema.RetryPolicy{}, nil
	}
	w := p.wire()
	// Less than a millisecond below zero is still below zero.
	if p.InitialBackoff < 0 {
		w.InitialBackoffMS = min(w.InitialBackoffMS, -1)
	}
	if p.MaxBackoff < 0 {
		w.MaxBackoffMS = min(w.MaxBackoffMS, -1)
	}
	if e := w.Check("retry." + name); e != nil {
		return schema.RetryPolicy{}, fmt.Errorf("%w: %s: %w", ErrInvalidConfig, name, e)
	}
	return w, nil
}
