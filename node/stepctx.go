package node

import (
	"context"
	"sync"
	"time"
)

// stepCtx is the context a peer's step runs under: the node's context with
// the step's deadline, cancelled when its planner cancels the step
// (running set) and when the step ends. It costs no allocation, timer or
// goroutine until something asks for its Done channel or a Value: until
// then Err is worked out from the node's context, the clock and whether it
// was cancelled. The first Done or Value backs it with a
// context.WithDeadline of the node's context, which answers from then on,
// so that a function that waits on it, or derives contexts from it, gets a
// context's usual behaviour.
//
// Its zero value is not usable: set parent and dl before use.
type stepCtx struct {
	parent context.Context
	dl     time.Time

	mu     sync.Mutex
	err    error              // how it ended, once seen (kept: Err does not change)
	backed context.Context    // nil until Done or Value
	stop   context.CancelFunc // backed's
}

var _ context.Context = (*stepCtx)(nil)

// Deadline is the step's deadline.
func (c *stepCtx) Deadline() (time.Time, bool) { return c.dl, true }

// Err is nil while the step may run, else context.Canceled (cancelled, or
// the node's context ended) or context.DeadlineExceeded.
func (c *stepCtx) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return c.err
	}
	if c.backed != nil {
		return c.backed.Err()
	}
	c.err = c.ended()
	return c.err
}

// ended is how the step's context ended without a cancel of its own, or
// nil while it has not: the node's context first, then the deadline.
func (c *stepCtx) ended() error {
	if err := c.parent.Err(); err != nil {
		return err
	}
	if !time.Now().Before(c.dl) {
		return context.DeadlineExceeded
	}
	return nil
}

// Done is closed when the step's context ends.
func (c *stepCtx) Done() <-chan struct{} { return c.back().Done() }

// Value is the node's context's value for key (backed, so that
// context.Cause sees this context's own end).
func (c *stepCtx) Value(key any) any { return c.back().Value(key) }

// back makes, once, the context.WithDeadline that stands for c from then
// on, ended already with c's error when c had one.
func (c *stepCtx) back() context.Context {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.backed != nil {
		return c.backed
	}
	switch c.err {
	case nil:
		c.backed, c.stop = context.WithDeadline(c.parent, c.dl)
	case context.DeadlineExceeded: //nolint:errorlint // set here, never wrapped
		// Past its deadline: detached from the node's context, so that
		// it ends as it was seen to end.
		c.backed, c.stop = context.WithDeadline(context.WithoutCancel(c.parent), c.dl)
	default:
		c.backed, c.stop = context.WithCancel(context.WithoutCancel(c.parent))
		c.stop()
	}
	return c.backed
}

// cancel ends the step's context, unless it ended already: Canceled, or
// how it ended meanwhile. It is what a context's CancelFunc is, for the
// running set and for the end of the step.
func (c *stepCtx) cancel() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.backed != nil {
		c.stop()
		return
	}
	if c.err == nil {
		c.err = c.ended()
	}
	if c.err == nil {
		c.err = context.Canceled
	}
}
