package demo

import (
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mpreg/mpreg/schema"
)

// A node counts at most MaxCounterKeys keys, tally's and flaky's
// together; the keys it knows go on counting.
func TestCountersBound(t *testing.T) {
	c := newCounters()
	for i := range MaxCounterKeys - 1 {
		_, err := c.Tally(strconv.Itoa(i))
		require.NoError(t, err)
	}
	n, err := c.Flaky("last", 0)
	require.NoError(t, err)
	require.Equal(t, int64(1), n)
	_, err = c.Tally("one more")
	require.Error(t, err)
	e := schema.AsError(err)
	require.Equal(t, schema.CodeInvalidArgument, e.Code)
	require.Contains(t, e.Message, "already counts 10000 keys")
	_, err = c.Flaky("one more", 0)
	require.ErrorIs(t, err, schema.ErrInvalidArgument)
	n, err = c.Tally("7")
	require.NoError(t, err)
	require.Equal(t, int64(2), n)
	_, err = c.Flaky("last", 5)
	require.ErrorContains(t, err, "flaky: call 2 of 5 that fail", "a key it knows")
}
