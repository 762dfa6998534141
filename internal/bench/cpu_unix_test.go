//go:build unix

package bench

import (
	"syscall"
	"time"
)

// processCPU is the user and system CPU time this process has used: the
// server's, the node's and the clients' together.
func processCPU() (time.Duration, bool) {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0, false
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), true
}
