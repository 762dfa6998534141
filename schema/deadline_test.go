package schema_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mpreg/mpreg/schema"
)

func TestDeadline(t *testing.T) {
	now := time.UnixMilli(1_700_000_000_000)
	const def, maxT = 30 * time.Second, 10 * time.Minute
	for _, tc := range []struct {
		name                  string
		timeoutMS, deadlineMS int64
		want                  time.Time
	}{
		{"none: the default", 0, 0, now.Add(def)},
		{"timeout_ms", 1500, 0, now.Add(1500 * time.Millisecond)},
		{"timeout_ms capped at max", (20 * time.Minute).Milliseconds(), 0, now.Add(maxT)},
		{"huge timeout_ms does not overflow", math.MaxInt64, 0, now.Add(maxT)},
		{"deadline_ms sooner than timeout_ms", 5000, now.Add(2 * time.Second).UnixMilli(), now.Add(2 * time.Second)},
		{"deadline_ms later than timeout_ms", 1000, now.Add(time.Hour).UnixMilli(), now.Add(time.Second)},
		{"deadline_ms alone, sooner than the default", 0, now.Add(time.Second).UnixMilli(), now.Add(time.Second)},
		{"deadline_ms already passed", 1000, now.Add(-time.Second).UnixMilli(), now.Add(-time.Second)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := schema.Deadline(now, tc.timeoutMS, tc.deadlineMS, def, maxT)
			require.True(t, got.Equal(tc.want), "got %v, want %v", got, tc.want)
		})
	}
	// A default above max is capped too.
	require.True(t, schema.Deadline(now, 0, 0, time.Hour, maxT).Equal(now.Add(maxT)))
}

func TestBudgetIsDeadlinesReverse(t *testing.T) {
	now := time.UnixMilli(1_700_000_000_000)
	dl := now.Add(2500 * time.Millisecond)
	timeoutMS, deadlineMS := schema.Budget(now, dl)
	require.Equal(t, int64(2500), timeoutMS)
	require.Equal(t, dl.UnixMilli(), deadlineMS)
	require.True(t, schema.Deadline(now, timeoutMS, deadlineMS, time.Second, time.Hour).Equal(dl))

	// A deadline passed, or less than a millisecond away, still sends a
	// budget of 1 ms: 0 would mean none.
	timeoutMS, _ = schema.Budget(now, now.Add(-time.Second))
	require.Equal(t, int64(1), timeoutMS)
	timeoutMS, _ = schema.Budget(now, now.Add(time.Microsecond))
	require.Equal(t, int64(1), timeoutMS)
}

func TestEnded(t *testing.T) {
	t.Run("deadline", func(t *testing.T) {
		ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
		defer cancel()
		e := schema.Ended(ctx, nil, "too late", "stopped")
		require.Equal(t, schema.CodeTimeout, e.Code)
		require.Equal(t, "too late", e.Message)
		require.ErrorIs(t, e, schema.ErrTimeout)
		require.ErrorIs(t, e, context.DeadlineExceeded, "the cause is kept")
	})
	t.Run("cancel", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		e := schema.Ended(ctx, nil, "too late", "stopped")
		require.Equal(t, schema.CodeCancelled, e.Code)
		require.Equal(t, "stopped", e.Message)
		require.ErrorIs(t, e, context.Canceled)
	})
	t.Run("cancel with a cause", func(t *testing.T) {
		gone := errors.New("the caller went away")
		ctx, cancel := context.WithCancelCause(context.Background())
		cancel(gone)
		e := schema.Ended(ctx, nil, "too late", "stopped")
		require.Equal(t, schema.CodeCancelled, e.Code)
		require.ErrorIs(t, e, gone, "ctx's cause is kept")
	})
	t.Run("an error of a deadline, ctx still live", func(t *testing.T) {
		err := fmt.Errorf("waiting: %w", context.DeadlineExceeded)
		e := schema.Ended(context.Background(), err, "too late", "stopped")
		require.Equal(t, schema.CodeTimeout, e.Code)
		require.ErrorIs(t, e, context.DeadlineExceeded)
	})
	t.Run("a deadline ends a ctx whose step saw a cancel", func(t *testing.T) {
		ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
		defer cancel()
		e := schema.Ended(ctx, context.Canceled, "too late", "stopped")
		require.Equal(t, schema.CodeTimeout, e.Code)
	})
	t.Run("an error holding an error object is not a cause", func(t *testing.T) {
		ctx, cancel := context.WithCancelCause(context.Background())
		cancel(schema.ErrNodeUnavailable)
		e := schema.Ended(ctx, nil, "too late", "stopped")
		require.Equal(t, schema.CodeCancelled, e.Code)
		require.NotErrorIs(t, e, schema.ErrNodeUnavailable)
		require.NoError(t, e.Unwrap())
	})
}

func TestAsCodeKeepsTheCause(t *testing.T) {
	cause := &fsError{path: "/tmp/x"}
	err := fmt.Errorf("reading: %w", cause)
	e := schema.AsCode(err, schema.CodeFunctionError)
	require.Equal(t, schema.CodeFunctionError, e.Code)
	require.Equal(t, err.Error(), e.Message, "the wire carries the text")
	require.ErrorIs(t, e, schema.ErrFunctionError)
	require.ErrorIs(t, e, cause)
	var fe *fsError
	require.ErrorAs(t, e, &fe)
	require.Equal(t, "/tmp/x", fe.path)

	// AsError is AsCode with INTERNAL.
	e = schema.AsError(io.ErrUnexpectedEOF)
	require.Equal(t, schema.CodeInternal, e.Code)
	require.ErrorIs(t, e, io.ErrUnexpectedEOF)

	// An error object, also wrapped, comes back as it is.
	obj := schema.Errorf(schema.CodeNoRoute, "no node")
	require.Same(t, obj, schema.AsCode(obj, schema.CodeInternal))
	require.Same(t, obj, schema.AsCode(fmt.Errorf("routing: %w", obj), schema.CodeInternal))
	require.Nil(t, schema.AsCode(nil, schema.CodeInternal))
}

func TestWrapWithoutText(t *testing.T) {
	e := schema.Wrap(schema.CodeInternal, io.EOF, "")
	require.Equal(t, "EOF", e.Message)
	require.ErrorIs(t, e, io.EOF)
	e = schema.Wrap(schema.CodeInternal, io.EOF, "reading %s", "x")
	require.Equal(t, "reading x: EOF", e.Message)
}

// fsError is an error type of its own, for errors.As.
type fsError struct{ path string }

func (e *fsError) Error() string { return "cannot open " + e.path }
