package testwait

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/mpreg/mpreg/planner"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestWaits(t *testing.T) {
	ch := make(chan int, 1)
	ch <- 7
	require.Equal(t, 7, Recv(t, ch, "a value"))
	require.NotNil(t, Ctx(t).Done())
	n := 0
	For(t, "three tries", func() error {
		if n++; n < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	var e Events
	e.StepDone(planner.StepEvent{Step: "a"})
	require.Len(t, e.All(), 1)
}
