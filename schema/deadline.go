package schema

import (
	"context"
	"errors"
	"time"
)

// Deadline is when work received at now must end, from the budget its
// sender wrote (docs/PROTOCOL.md §4 and §6): timeoutMS after now (def when
// timeoutMS is 0), never more than limit after now, and no later than
// deadlineMS (unix milliseconds, when not 0). It is the one place a
// timeout_ms or deadline_ms becomes a time: a planner reading a request, a
// node reading an exec, a client bounding its wait.
func Deadline(now time.Time, timeoutMS, deadlineMS int64, def, limit time.Duration) time.Time {
	timeout := def
	if timeoutMS > 0 {
		// Cap in milliseconds first: a huge timeout_ms must not overflow.
		timeout = time.Duration(min(timeoutMS, limit.Milliseconds())) * time.Millisecond
	}
	dl := now.Add(min(timeout, limit))
	if deadlineMS > 0 {
		// The sender's own deadline (its clock, ours: hosts are assumed to
		// keep time within a few ms, by NTP): work read late runs nothing
		// after the sender stopped waiting.
		if at := time.UnixMilli(deadlineMS); at.Before(dl) {
			dl = at
		}
	}
	return dl
}

// Budget is the timeout_ms and deadline_ms that carry deadline dl in a
// message sent at now: the reverse of Deadline. timeout_ms is at least 1
// (0 would mean "none").
func Budget(now, dl time.Time) (timeoutMS, deadlineMS int64) {
	return max(dl.Sub(now).Milliseconds(), 1), dl.UnixMilli()
}

// Ended is the error of work stopped by the end of ctx, or by err, an
// error that came of it: TIMEOUT when err, ctx's error or ctx's cause is
// context.DeadlineExceeded, else CANCELLED, with the message timeout or
// cancelled. It keeps err (ctx's cause when err is nil) as its cause, for
// errors.Is and errors.As. It is the one place a context's end becomes a
// code.
func Ended(ctx context.Context, err error, timeout, cancelled string) *Error {
	if err == nil {
		err = context.Cause(ctx)
	}
	e := &Error{Code: CodeCancelled, Message: cancelled, cause: causeOf(err)}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded) ||
		errors.Is(context.Cause(ctx), context.DeadlineExceeded) {
		e.Code, e.Message = CodeTimeout, timeout
	}
	return e
}
