package node

import (
	"context"
	"slices"
	"sort"
	"sync"
	"time"
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
