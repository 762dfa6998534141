package planner

import (
	"context"
	"maps"
	"math/rand/v2"
	"time"

	"github.com/mpreg/mpreg/schema"
)

// retryByPolicy tries call again, after its first round of attempts
// (execOnce) made attempts and ended in e on node, as long as the retry
// policy of the node that ran the last failed attempt allows
// (docs/PROTOCOL.md §8): for FUNCTION_ERROR, FUNCTION_PANIC,
// NODE_UNAVAILABLE and a TIMEOUT of the step itself, up to the policy's
// attempts in all, waiting its backoff before each, never past the
// request's deadline. The error of a step a policy applied to carries
// details.attempts.
func (r *Runner) retryByPolicy(ctx context.Context, call *Call, node string, attempts int, e *schema.Error) (any, string, int, *schema.Error) {
	applied := false
	call.park = false // a retry waits for its route itself
	for n := 1; ; n++ {
		p := r.policyFor(ctx, node, call.Fun, e)
		if p == nil || int64(attempts) >= p.Attempts {
			return nil, node, attempts, withAttempts(e, attempts, applied || p != nil)
		}
		applied = true
		wait := p.Jittered(p.Backoff(n), rand.Float64())
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
			return nil, node, attempts, withAttempts(e, attempts, true) // the budget ends before the backoff
		}
		if r.Logger != nil {
			r.Logger.Debug("step retried by policy", "request_id", call.RequestID, "step", call.Step, "node", node,
				"code", e.Code, "attempts", attempts, "backoff", wait)
		}
		if err := sleep(ctx, wait); err != nil {
			return nil, node, attempts, contextError(ctx, err).WithStep(call.Step, node)
		}
		var res any
		var next string
		res, next, attempts, e = r.execOnce(ctx, call, attempts)
		if next != "" {
			node = next
		}
		if e == nil {
			return res, node, attempts, nil
		}
	}
}

// policyFor returns the retry policy node advertises for fun when a step
// that ended in e may be tried again by it, else nil: e is
// FUNCTION_ERROR, FUNCTION_PANIC, NODE_UNAVAILABLE, or TIMEOUT while the
// request's budget is not spent (the step's own deadline), and the
// request goes on.
func (r *Runner) policyFor(ctx context.Context, node, fun string, e *schema.Error) *schema.RetryPolicy {
	if ctx.Err() != nil || node == "" {
		return nil
	}
	switch e.Code {
	case schema.CodeFunctionError, schema.CodeFunctionPanic, schema.CodeNodeUnavailable, schema.CodeTimeout:
	default:
		return nil
	}
	p := r.Retries.Policy(node, fun)
	if p == nil || p.Attempts <= 1 {
		return nil
	}
	return p
}

// sleep waits d, or until ctx ends (its error then).
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// withAttempts is e with details.attempts set to n when a policy applied
// (e itself otherwise): a copy, details included, since e may be shared.
// Details that are not a map move to details.details.
func withAttempts(e *schema.Error, n int, applied bool) *schema.Error {
	if !applied {
		return e
	}
	c := *e
	d := map[string]any{}
	switch old := e.Details.(type) {
	case map[string]any:
		d = maps.Clone(old)
		if d == nil {
			d = map[string]any{}
		}
	case nil:
	default:
		d["details"] = old
	}
	d["attempts"] = int64(n)
	c.Details = d
	return &c
}
