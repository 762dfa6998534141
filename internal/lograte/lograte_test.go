package lograte

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestLimiter(t *testing.T) {
	l := &Limiter{Every: time.Hour}
	ok, n := l.Allow("a")
	require.True(t, ok)
	require.Zero(t, n)
	for i := 0; i < 5; i++ {
		ok, _ = l.Allow("a")
		require.False(t, ok, "a second record of a within the interval is held back")
	}
	ok, _ = l.Allow("b")
	require.True(t, ok, "kinds are limited apart")

	l.mu.Lock()
	l.kinds["a"].last = time.Now().Add(-2 * time.Hour)
	l.mu.Unlock()
	ok, n = l.Allow("a")
	require.True(t, ok)
	require.Equal(t, int64(5), n, "the next record names the ones held back")
}
