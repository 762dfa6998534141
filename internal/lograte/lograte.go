// Package lograte keeps a flood of bad messages from becoming a flood of
// log lines: for each kind of event it lets one record through per
// interval and counts the ones it held back, which the next record names.
package lograte

import (
	"sync"
	"time"
)

// Limiter rate-limits log records by kind. The zero value lets one record
// of each kind through per second. It is safe for concurrent use. Kinds
// are a fixed set of strings chosen by the caller, never data read from
// the network, so the limiter's memory stays bounded.
type Limiter struct {
	// Every is the least time between two records of one kind. Default 1 s.
	Every time.Duration

	mu    sync.Mutex
	kinds map[string]*kind
}

type kind struct {
	last       time.Time
	suppressed int64
}

// Allow reports whether a record of kind may be logged now and, when it
// may, how many records of that kind were held back since the last one.
func (l *Limiter) Allow(k string) (ok bool, suppressed int64) {
	every := l.Every
	if every <= 0 {
		every = time.Second
	}
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.kinds == nil {
		l.kinds = make(map[string]*kind)
	}
	s := l.kinds[k]
	if s == nil {
		s = &kind{}
		l.kinds[k] = s
	}
	if !s.last.IsZero() && now.Sub(s.last) < every {
		s.suppressed++
		return false, 0
	}
	s.last = now
	n := s.suppressed
	s.suppressed = 0
	return true, n
}
