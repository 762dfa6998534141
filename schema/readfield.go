package schema

import "fmt"

// The Read functions fill a wire struct from a Reader, reading every key
// of its map in the order the body has them. What they refuse, and the
// error they give, do not depend on that order: each key's error is kept
// at the key's place in its struct's fields table, a later copy of a key
// replacing an earlier one (as a decoded map keeps the last), and the
// error reported is the first in table order once the whole map is read.
// A map of entries named by the sender (Response.errors) reports the
// error of its smallest name. Every value is read to its end, so a body
// that does not decode fails as such whatever its parse errors.

// maxFields bounds the fields of one table.
const maxFields = 16

// at names a key for error messages: prefix.key, joined only when an
// error needs it.
type at struct{ prefix, key string }

func (a at) String() string { return join(a.prefix, a.key) }

// field reads one key of a wire struct T.
type field[T any] struct {
	key      string
	required bool // absent: "required key missing"
	read     func(r Reader, x *T, a at) *Error
}

// readStruct reads the next value, a map, into x by fields. what names the
// value when it is not a map; prefix is joined to its keys in errors.
// seen has bit i set when fields[i] was read.
func readStruct[T any](r Reader, x *T, what, prefix string, fields []field[T]) (seen uint32, err *Error) {
	if k := r.Next(); k != KindMap {
		r.Skip()
		return 0, kindErr(what, "map", k)
	}
	var errs [maxFields]*Error
	r.Map()
	for k, ok := r.Key(); ok; k, ok = r.Key() {
		i := fieldIndex(fields, k)
		if i < 0 {
			r.Skip()
			continue
		}
		seen |= 1 << i
		errs[i] = fields[i].read(r, x, at{prefix, fields[i].key})
	}
	for i := range fields {
		switch {
		case seen&(1<<i) == 0 && fields[i].required:
			return seen, missing(join(prefix, fields[i].key))
		case errs[i] != nil:
			return seen, errs[i]
		}
	}
	return seen, nil
}

func fieldIndex[T any](fields []field[T], k string) int {
	for i := range fields {
		if fields[i].key == k {
			return i
		}
	}
	return -1
}

// boolField is the read of a boolean key (the key alone named in errors).
func boolField[T any](dst func(*T) *bool) func(Reader, *T, at) *Error {
	return func(r Reader, x *T, a at) (e *Error) {
		*dst(x), e = readBool(r, a.key)
		return e
	}
}

// kindErr is typeErr for a Reader's kind.
func kindErr(key, want string, got Kind) *Error {
	return &Error{
		Code:    CodeInvalidRequest,
		Message: fmt.Sprintf("%s: want %s, got %s", key, want, got),
		Details: map[string]any{"key": key},
	}
}

// readStr reads a string; null is "" (missing when required).
func readStr(r Reader, a at, required bool) (string, *Error) {
	switch k := r.Next(); k {
	case KindString:
		return r.Str(), nil
	case KindNull:
		r.Skip()
		if required {
			return "", missing(a.String())
		}
		return "", nil
	default:
		r.Skip()
		return "", kindErr(a.String(), "string", k)
	}
}

// readInt reads an integer; null is 0.
func readInt(r Reader, a at) (int64, *Error) {
	switch k := r.Next(); k {
	case KindNumber:
		n, ok := r.Int()
		if !ok {
			return 0, kindErr(a.String(), "integer", k)
		}
		return n, nil
	case KindNull:
		r.Skip()
		return 0, nil
	default:
		r.Skip()
		return 0, kindErr(a.String(), "integer", k)
	}
}

// readBool reads a boolean; null is false.
func readBool(r Reader, key string) (bool, *Error) {
	switch k := r.Next(); k {
	case KindBool:
		return r.Bool(), nil
	case KindNull:
		r.Skip()
		return false, nil
	default:
		r.Skip()
		return false, kindErr(key, "boolean", k)
	}
}

// readValue reads a value of kind want as a tree (T: []any or
// map[string]any); null is nil.
func readValue[T any](r Reader, a at, want Kind, name string) (T, *Error) {
	var zero T
	switch k := r.Next(); k {
	case want:
		v, _ := r.Value().(T)
		return v, nil
	case KindNull:
		r.Skip()
		return zero, nil
	default:
		r.Skip()
		return zero, kindErr(a.String(), name, k)
	}
}

func readList(r Reader, a at) ([]any, *Error) { return readValue[[]any](r, a, KindList, "list") }

func readMap(r Reader, a at) (map[string]any, *Error) {
	return readValue[map[string]any](r, a, KindMap, "map")
}

// readStrList reads a list of strings; null is nil.
func readStrList(r Reader, a at) ([]string, *Error) {
	l, _, err := readStrListN(r, a)
	return l, err
}

// readStrListN is readStrList that also counts the list's elements,
// strings or not.
func readStrListN(r Reader, a at) ([]string, int, *Error) {
	switch k := r.Next(); k {
	case KindList:
	case KindNull:
		r.Skip()
		return nil, 0, nil
	default:
		r.Skip()
		return nil, 0, kindErr(a.String(), "list of strings", k)
	}
	out := []string{} // empty, not nil, as a decoded empty list; no allocation
	if n := r.List(); n > 0 {
		out = make([]string, 0, capHint(n))
	}
	var err *Error
	i := 0
	for ; r.More(); i++ {
		if k := r.Next(); k != KindString {
			r.Skip()
			if err == nil {
				err = kindErr(fmt.Sprintf("%s[%d]", a, i), "string", k)
			}
			continue
		}
		out = append(out, r.Str())
	}
	return out, i, err
}

// capHint is the capacity to make for a list of n elements (-1: unknown):
// n up to a bound, since a count read from the network is only as true as
// the bytes that follow it.
func capHint(n int) int {
	if n < 0 {
		return 4
	}
	return min(n, 64)
}

// readBoundedStr reads an optional or required string of at most max
// bytes.
func readBoundedStr(r Reader, key string, required bool, maxBytes int) (string, *Error) {
	s, err := readStr(r, at{key: key}, required)
	if err == nil && len(s) > maxBytes {
		err = tooLong(key, "max_"+key+"_len", maxBytes)
	}
	return s, err
}

// readID reads a required id (cluster, node) and checks it with CheckID.
func readID(r Reader, key string) (string, *Error) {
	s, err := readStr(r, at{key: key}, true)
	if err != nil {
		return s, err
	}
	if e := checkID(s); e != nil {
		return s, invalid(key, "%s", e.Message)
	}
	return s, nil
}

// readDeadline reads deadline_ms: unix milliseconds below 2^53.
func readDeadline(r Reader, a at) (int64, *Error) {
	ms, err := readInt(r, a)
	if err == nil && (ms < 0 || ms > MaxProtoInt) {
		err = invalid("deadline_ms", "must be 0 to 2^53-1 (unix milliseconds)")
	}
	return ms, err
}

// readEach reads the next value, a list, calling each on every element
// (key names the list in errors): the first error is kept; null is no
// list.
func readEach(r Reader, key string, each func(i int) *Error) (isList bool, err *Error) {
	switch k := r.Next(); k {
	case KindList:
	case KindNull:
		r.Skip()
		return false, nil
	default:
		r.Skip()
		return false, kindErr(key, "list", k)
	}
	r.List()
	for i := 0; r.More(); i++ {
		if e := each(i); e != nil && err == nil {
			err = e
		}
	}
	return true, err
}
