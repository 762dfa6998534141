package planner

import (
	"fmt"
	"slices"
	"strings"

	"github.com/mpreg/mpreg/schema"
)

// MaxWarnings bounds the warnings of one request.
const MaxWarnings = 16

// nearBudget bounds the name comparisons Warnings makes for one request,
// so that a dry run of a large request costs little: past it, strings are
// still checked for a leading "|", not for near names.
const nearBudget = 1 << 20

// minNearLen is the shortest command name a string is compared with for a
// near miss: one edit turns any one- or two-letter name into many ordinary
// words.
const minNearLen = 3

// Warnings lists what in req runs but perhaps not as its author meant
// (docs/PROTOCOL.md §5.1): a top-level string argument (an element of
// args, a value of kwargs) that names no command, and so is passed as the
// string itself, while it starts with "|" or is one edit (a character
// inserted, removed or replaced, or two neighbours swapped) away from a
// command's name of at least 3 bytes. Such a string is often a mistyped
// reference. At most MaxWarnings, in the order of cmds; nil when none.
func Warnings(req *schema.Request) []schema.Warning {
	w := warner{names: make(map[string]bool, len(req.Cmds)), byLen: map[int][]string{}, budget: nearBudget}
	for _, c := range req.Cmds {
		if !w.names[c.Name] {
			w.names[c.Name] = true
			if len(c.Name) >= minNearLen {
				w.byLen[len(c.Name)] = append(w.byLen[len(c.Name)], c.Name)
			}
		}
	}
	for i, c := range req.Cmds {
		for j, a := range c.Args {
			w.check(c.Name, a, func() string { return fmt.Sprintf("cmds[%d].args[%d]", i, j) })
		}
		keys := make([]string, 0, len(c.Kwargs))
		for k := range c.Kwargs {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			w.check(c.Name, c.Kwargs[k], func() string { return fmt.Sprintf("cmds[%d].kwargs.%s", i, k[:min(len(k), 64)]) })
		}
		if len(w.out) >= MaxWarnings {
			break
		}
	}
	return w.out
}

type warner struct {
	names  map[string]bool
	byLen  map[int][]string // names of at least minNearLen bytes, by length
	budget int
	out    []schema.Warning
}

func (w *warner) check(step string, v any, key func() string) {
	s, ok := v.(string)
	if !ok || w.names[s] || len(w.out) >= MaxWarnings {
		return
	}
	near := w.near(s)
	switch {
	case near != "":
		w.out = append(w.out, schema.Warning{Step: step, Key: key(), Near: near,
			Message: fmt.Sprintf("%s names no command but is one edit from %q: it is passed as the string itself", schema.Clip(s), near)})
	case strings.HasPrefix(s, "|"):
		w.out = append(w.out, schema.Warning{Step: step, Key: key(),
			Message: fmt.Sprintf("%s starts with \"|\" but names no command: it is passed as the string itself", schema.Clip(s))})
	}
}

// near returns the first command name one edit from s, or "".
func (w *warner) near(s string) string {
	for n := len(s) - 1; n <= len(s)+1; n++ {
		for _, name := range w.byLen[n] {
			if w.budget <= 0 {
				return ""
			}
			w.budget--
			if oneEdit(s, name) {
				return name
			}
		}
	}
	return ""
}

// oneEdit reports whether a and b differ by exactly one edit: a byte
// inserted, removed or replaced, or two neighbouring bytes swapped.
func oneEdit(a, b string) bool {
	if len(a) < len(b) {
		a, b = b, a
	}
	i := 0
	for i < len(b) && a[i] == b[i] {
		i++
	}
	switch len(a) - len(b) {
	case 0:
		if i == len(a) {
			return false // equal
		}
		if a[i+1:] == b[i+1:] {
			return true // replaced
		}
		return i+1 < len(a) && a[i] == b[i+1] && a[i+1] == b[i] && a[i+2:] == b[i+2:] // swapped
	case 1:
		return a[i+1:] == b[i:] // inserted
	}
	return false
}
