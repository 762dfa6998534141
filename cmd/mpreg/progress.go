package main

import (
	"fmt"
	"io"
	"time"

	"github.com/mpreg/mpreg/client"
	"github.com/mpreg/mpreg/schema"
)

// progress shows a streamed request's events: on a terminal one status
// line redrawn in place, otherwise a line per event.
type progress struct {
	w       io.Writer
	tty     bool
	start   time.Time
	total   int64
	done    map[string]bool // steps that finished (ok or not)
	planner string
}

func newProgress(w io.Writer) *progress {
	return &progress{w: w, tty: isTerminal(w), start: time.Now(), done: map[string]bool{}}
}

// event takes one event of the stream.
func (p *progress) event(ev client.Event) {
	elapsed := time.Since(p.start).Round(time.Millisecond)
	switch ev.Kind {
	case schema.EventPlanned:
		p.total, p.planner = ev.Planned.Steps, ev.Planned.Planner
		if !p.tty {
			fmt.Fprintf(p.w, "%s planned by %s: %d steps\n", elapsed, p.planner, p.total)
		}
	case schema.EventStep:
		s := ev.Step
		p.done[s.Step] = true
		if !p.tty {
			fmt.Fprintf(p.w, "%s step %s (%s) on %s: %s, ran %s [%d/%d]\n", elapsed, s.Step, s.Fun, s.Node, s.Code,
				time.Duration(s.RunUS)*time.Microsecond, len(p.done), p.total)
			return
		}
		fmt.Fprintf(p.w, "\r\x1b[K%d/%d steps done · last %s on %s: %s · %s elapsed · planner %s",
			len(p.done), p.total, s.Step, s.Node, s.Code, elapsed, p.planner)
	}
}

// end finishes the display.
func (p *progress) end() {
	if p.tty && len(p.done) > 0 {
		fmt.Fprintln(p.w)
	}
}
