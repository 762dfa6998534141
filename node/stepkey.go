package node

import "context"

// StepKey returns the idempotency key of the step whose function runs
// under ctx: "<request id>/<step name>" (the exec id of docs/PROTOCOL.md
// §6), the same on every attempt of the step and on every run of a
// durable request, whichever node runs it. A function whose side effects
// must happen once keys them by it (docs/RELIABILITY.md, "Step
// semantics"). ok is false for a context that is not a step's.
func StepKey(ctx context.Context) (key string, ok bool) {
	id, ok := ctx.Value(stepKeyOf{}).(stepID)
	if !ok {
		return "", false
	}
	return id.String(), true
}

// stepKeyOf is the context key of a step's stepID.
type stepKeyOf struct{}

// keyCtx is a step's context with its stepID, for StepKey.
type keyCtx struct {
	context.Context
	id stepID
}

// Value implements context.Context.
func (c *keyCtx) Value(key any) any {
	if _, ok := key.(stepKeyOf); ok {
		return c.id
	}
	return c.Context.Value(key)
}
