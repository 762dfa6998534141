package objref

import (
	"maps"
	"slices"
)

// Resolver returns the value a reference stands for.
type Resolver func(Ref) (any, error)

// Escape returns v with every literal map whose only key is $obj or $lit
// wrapped as {"$lit": <the map>}, at any depth, so that a receiver takes
// it for the map it is and not for a reference or an escape. Only maps
// and lists are walked, and v is copied only where something changes: a
// value without such maps is returned as it is.
func Escape(v any) any {
	out, _ := escape(v)
	return out
}

func escape(v any) (any, bool) {
	switch t := v.(type) {
	case map[string]any:
		m, changed, _ := walkValues(t, walker{})
		if _, sp := special(m); sp {
			return map[string]any{KeyLit: m}, true
		}
		return m, changed
	case []any:
		if l, changed, _ := walkList(t, walker{}); changed {
			return l, true
		}
	}
	return v, false // as it came: no new interface value
}

// walker is one walk's step over a value: Escape's (unescape false), or
// Unescape's with resolve.
type walker struct {
	unescape bool
	resolve  Resolver
}

func (w walker) value(v any) (any, bool, error) {
	if w.unescape {
		return unescape(v, w.resolve)
	}
	x, changed := escape(v)
	return x, changed, nil
}

// walkList returns l with w applied to each map or list in it, copied
// only when one changed.
func walkList(l []any, w walker) ([]any, bool, error) {
	var out []any
	for i, e := range l {
		if !walked(e) {
			continue
		}
		x, changed, err := w.value(e)
		if err != nil {
			return nil, false, err
		}
		if !changed {
			continue
		}
		if out == nil {
			out = slices.Clone(l)
		}
		out[i] = x
	}
	if out == nil {
		return l, false, nil
	}
	return out, true, nil
}

// walkValues is walkList over m's values.
func walkValues(m map[string]any, w walker) (map[string]any, bool, error) {
	var out map[string]any
	for k, e := range m {
		if !walked(e) {
			continue
		}
		x, changed, err := w.value(e)
		if err != nil {
			return nil, false, err
		}
		if !changed {
			continue
		}
		if out == nil {
			out = maps.Clone(m)
		}
		out[k] = x
	}
	if out == nil {
		return m, false, nil
	}
	return out, true, nil
}

// walked says whether v is a map or a list, the only values a walk looks
// into.
func walked(v any) bool {
	switch v.(type) {
	case map[string]any, []any:
		return true
	}
	return false
}

// Unescape undoes Escape and resolves references: at any depth, a map
// whose only key is $lit becomes the value inside, which is not itself
// read as a reference or an escape (its own values are walked as usual);
// a map whose only key is $obj is a reference, replaced by what resolve
// returns for it (with a nil resolve it stays as it is). A malformed
// reference is an *Error; resolve's errors are returned as they are. v
// is copied only where something changes.
func Unescape(v any, resolve Resolver) (any, error) {
	out, _, err := unescape(v, resolve)
	return out, err
}

// UnescapeList is Unescape of each element of l.
func UnescapeList(l []any, resolve Resolver) ([]any, error) {
	out, _, err := walkList(l, walker{true, resolve})
	return out, err
}

// UnescapeValues is Unescape of each value of m; m itself is not read as
// a reference or an escape (it is a function's keyword arguments, say).
func UnescapeValues(m map[string]any, resolve Resolver) (map[string]any, error) {
	out, _, err := walkValues(m, walker{true, resolve})
	return out, err
}

func unescape(v any, resolve Resolver) (any, bool, error) {
	switch t := v.(type) {
	case map[string]any:
		k, sp := special(t)
		switch {
		case !sp:
			return walkValues(t, walker{true, resolve})
		case k == KeyLit:
			if inner, ok := t[KeyLit].(map[string]any); ok {
				out, _, err := walkValues(inner, walker{true, resolve})
				return out, true, err
			}
			out, _, err := unescape(t[KeyLit], resolve)
			return out, true, err
		case resolve == nil:
			return v, false, nil
		}
		r, err := Parse(t[KeyObj])
		if err != nil {
			return nil, false, err
		}
		x, err := resolve(r)
		return x, true, err
	case []any:
		l, changed, err := walkList(t, walker{true, resolve})
		if changed || err != nil {
			return l, changed, err
		}
	}
	return v, false, nil
}

// Mentions says whether a map whose only key is $obj or $lit is among l's
// elements or m's values, at any depth: when not, Unescape of them
// changes nothing and need not be called.
func Mentions(l []any, m map[string]any) bool {
	for _, e := range l {
		if walked(e) && mentions(e) {
			return true
		}
	}
	for _, e := range m {
		if walked(e) && mentions(e) {
			return true
		}
	}
	return false
}

func mentions(v any) bool {
	switch t := v.(type) {
	case map[string]any:
		if _, sp := special(t); sp {
			return true
		}
		for _, e := range t {
			if walked(e) && mentions(e) {
				return true
			}
		}
	case []any:
		for _, e := range t {
			if walked(e) && mentions(e) {
				return true
			}
		}
	}
	return false
}

// MentionsValue is Mentions of one value: whether v is, or holds at any
// depth, a map whose only key is $obj or $lit.
func MentionsValue(v any) bool { return walked(v) && mentions(v) }
