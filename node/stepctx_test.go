package node

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mpreg/mpreg/internal/testwait"
)

// TestStepCtx: a step's context ends like a context.WithDeadline of the
// node's context, whether or not anything asked for its Done channel
// before it ended.
func TestStepCtx(t *testing.T) {
	live := func() (*stepCtx, context.CancelFunc) {
		parent, stop := context.WithCancel(context.Background())
		return &stepCtx{parent: parent, dl: time.Now().Add(time.Hour)}, stop
	}

	t.Run("live", func(t *testing.T) {
		c, stop := live()
		defer stop()
		require.NoError(t, c.Err())
		dl, ok := c.Deadline()
		require.True(t, ok)
		require.Equal(t, c.dl, dl)
		c.cancel()
		require.ErrorIs(t, c.Err(), context.Canceled)
		testwait.Recv(t, c.Done(), "Done")
		require.ErrorIs(t, context.Cause(c), context.Canceled)
	})

	t.Run("cancel after Done", func(t *testing.T) {
		c, stop := live()
		defer stop()
		done := c.Done()
		child, cancelChild := context.WithCancel(c)
		defer cancelChild()
		require.NoError(t, child.Err())
		c.cancel()
		testwait.Recv(t, done, "Done")
		testwait.Recv(t, child.Done(), "Done")
		require.ErrorIs(t, c.Err(), context.Canceled)
		require.ErrorIs(t, child.Err(), context.Canceled)
	})

	t.Run("deadline without Done", func(t *testing.T) {
		parent, stop := context.WithCancel(context.Background())
		defer stop()
		c := &stepCtx{parent: parent, dl: time.Now().Add(-time.Millisecond)}
		require.ErrorIs(t, c.Err(), context.DeadlineExceeded)
		stop()     // the node's context ends later:
		c.cancel() // and so does the step; neither changes how it ended
		require.ErrorIs(t, c.Err(), context.DeadlineExceeded)
		testwait.Recv(t, c.Done(), "Done")
		require.ErrorIs(t, context.Cause(c), context.DeadlineExceeded)
		require.ErrorIs(t, c.Err(), context.DeadlineExceeded)
	})

	t.Run("deadline after Done", func(t *testing.T) {
		parent, stop := context.WithCancel(context.Background())
		defer stop()
		c := &stepCtx{parent: parent, dl: time.Now().Add(20 * time.Millisecond)}
		testwait.Recv(t, c.Done(), "Done")
		require.ErrorIs(t, c.Err(), context.DeadlineExceeded)
	})

	t.Run("node context ends", func(t *testing.T) {
		c, stop := live()
		done := c.Done()
		stop()
		testwait.Recv(t, done, "Done")
		require.ErrorIs(t, c.Err(), context.Canceled)

		c, stop = live()
		stop()
		require.ErrorIs(t, c.Err(), context.Canceled)
		testwait.Recv(t, c.Done(), "Done")
	})

	t.Run("values", func(t *testing.T) {
		type key struct{}
		parent, stop := context.WithCancel(context.WithValue(context.Background(), key{}, "v"))
		defer stop()
		c := &stepCtx{parent: parent, dl: time.Now().Add(time.Hour)}
		require.Equal(t, "v", c.Value(key{}))
		require.NoError(t, c.Err())
		c.cancel()
		require.ErrorIs(t, c.Err(), context.Canceled)
	})
}

// TestRunningSetStep: a cancel reaches a step registered with its stepCtx.
func TestRunningSetStep(t *testing.T) {
	var r runningSet
	c, stop := context.WithCancel(context.Background())
	defer stop()
	s := &peerStep{}
	s.ctx = stepCtx{parent: c, dl: time.Now().Add(time.Hour)}
	s.entry.step = &s.ctx
	r.put("id", &s.entry)
	require.True(t, r.cancel("id"))
	require.True(t, errors.Is(s.ctx.Err(), context.Canceled))
	r.remove("id", &s.entry)
	require.Empty(t, r.m)
}
