// Package testwait holds the waits every test package uses: a bounded
// receive, a bounded context, polling with a deadline, and a recorder of a
// planner's step events. It imports no NATS, so that the pure packages'
// tests can use it too.
package testwait

import (
	"bytes"
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mpreg/mpreg/planner"
)

// Bound is the most any single wait in a test may take before the test
// fails; it is never reached when the code under test is right.
const Bound = 10 * time.Second

// Recv waits for one value on ch, failing the test after Bound.
func Recv[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(Bound):
		t.Fatalf("timed out waiting for %s", what)
	}
	var zero T
	return zero
}

// Ctx returns a context bounded by Bound and cancelled at cleanup.
func Ctx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), Bound)
	t.Cleanup(cancel)
	return ctx
}

// For polls check every 5 ms until it returns nil, failing the test with
// the last error after Bound.
func For(t testing.TB, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(Bound)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Events records a planner's step events; it is safe for concurrent use.
type Events struct {
	mu  sync.Mutex
	evs []planner.StepEvent
}

var _ planner.Observer = (*Events)(nil)

// StepDone implements planner.Observer.
func (e *Events) StepDone(ev planner.StepEvent) {
	e.mu.Lock()
	e.evs = append(e.evs, ev)
	e.mu.Unlock()
}

// All returns the events recorded so far.
func (e *Events) All() []planner.StepEvent {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.evs)
}

// Buffer is a bytes.Buffer that a process or logger may write while a
// test reads it, e.g. to poll its output with For.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns what was written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
