//go:build unix

package bus

import (
	"fmt"
	"os"
	"syscall"
)

// lockDir takes an exclusive lock on the file at path (created when
// missing) without waiting; release drops it. The lock dies with the
// process, so a crash leaves none behind.
func lockDir(path string) (release func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("locked (%w)", err)
	}
	return func() { _ = f.Close() }, nil // closing the file drops the lock
}
