package node

import (
	"testing"

	"github.com/mpreg/mpreg/internal/testwait"
)

// TestTracker: idle is closed with no work in flight, and a channel taken
// while work is in flight is closed when the last of it is done.
func TestTracker(t *testing.T) {
	var tr tracker
	testwait.Recv(t, tr.idle(), "idle with nothing added")
	for range 2 {
		tr.add()
		tr.add()
		idle := tr.idle()
		tr.done()
		select {
		case <-idle:
			t.Fatal("idle while work is in flight")
		default:
		}
		tr.done()
		testwait.Recv(t, idle, "idle once the work is done")
		testwait.Recv(t, tr.idle(), "idle after")
	}
}
