package mesh

import (
	"context"
	"slices"
	"sync"

	"golang.org/x/sync/semaphore"
)

// DefaultWindow is the default of a Flow's window: the bytes one planner
// may have in flight to other nodes.
const DefaultWindow = 64 << 20

// Flow bounds the bytes a planner has in flight to other nodes: the exec
// requests it sent and the replies it expects to them. Without it one
// request of a few hundred steps, each returning most of a megabyte,
// brought hundreds of megabytes back at once, more than any NATS
// connection buffers, and other callers' replies were lost with it.
//
// A step reserves its request's size plus the size its reply is expected
// to have, and waits (until its context ends) while the window is full. A
// reply is expected to be at most twice the largest of the last replies
// of the same function; a function not yet seen is expected to reply with
// the max payload, so that a burst of first calls of a function whose
// replies are big stays within the window too: past a NATS server's
// max_pending (64 MiB by default) of messages waiting for one connection,
// the server drops that connection as a slow consumer, and every reply
// waiting with it. Requests are thus bounded exactly and replies as well
// as their functions' recent past tells, and the planner's memory for
// results is bounded by the request limits.
type Flow struct {
	window int64
	sem    *semaphore.Weighted

	mu    sync.Mutex
	sizes map[string]*replySizes // function → its recent reply sizes
}

// replySizes is a ring of a function's last reply sizes.
type replySizes struct {
	last [16]int64
	next int
	n    int
}

const (
	minReserve   = 4 << 10 // every step reserves at least this much
	maxFunctions = 4096    // functions whose reply sizes are remembered
)

// NewFlow returns a flow with a window of the given bytes (DefaultWindow
// when not positive).
func NewFlow(window int64) *Flow {
	if window <= 0 {
		window = DefaultWindow
	}
	return &Flow{window: window, sem: semaphore.NewWeighted(window), sizes: make(map[string]*replySizes)}
}

// expect returns the reply size expected of fun, at most maxPayload.
func (f *Flow) expect(fun string, maxPayload int64) int64 {
	f.mu.Lock()
	s := f.sizes[fun]
	var biggest int64 = -1
	if s != nil && s.n > 0 {
		biggest = slices.Max(s.last[:min(s.n, len(s.last))])
	}
	f.mu.Unlock()
	if biggest < 0 {
		return maxPayload
	}
	return min(max(2*biggest, minReserve), maxPayload)
}

// Reserve waits until a step of fun whose request is reqBytes long fits
// the window, and returns the bytes reserved, which the caller gives back
// with Release. It returns ctx's error if ctx ends first.
func (f *Flow) Reserve(ctx context.Context, fun string, reqBytes int, maxPayload int64) (int64, error) {
	n := min(int64(reqBytes)+f.expect(fun, maxPayload), f.window)
	if err := f.sem.Acquire(ctx, n); err != nil {
		return 0, err
	}
	return n, nil
}

// Release gives back bytes reserved by Reserve.
func (f *Flow) Release(n int64) {
	if n > 0 {
		f.sem.Release(n)
	}
}

// Observe records the size of a reply of fun.
func (f *Flow) Observe(fun string, replyBytes int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.sizes[fun]
	if s == nil {
		if len(f.sizes) >= maxFunctions {
			return
		}
		s = &replySizes{}
		f.sizes[fun] = s
	}
	s.last[s.next] = int64(replyBytes)
	s.next = (s.next + 1) % len(s.last)
	s.n++
}
