// Package objref is the wire form of a value passed by reference
// (docs/PROTOCOL.md §4.7): the reference map that stands for a value kept
// in the cluster's JetStream object bucket, and the escape that lets a
// literal map of the same shape travel unchanged. It has no NATS code and
// is safe for concurrent use.
package objref

import (
	"fmt"
	"math"
)

// Keys of the maps this package reads and writes.
const (
	// KeyObj is the only key of a reference: {"$obj": {...}}.
	KeyObj = "$obj"
	// KeyLit is the only key of an escaped literal: {"$lit": <map>}.
	KeyLit = "$lit"
)

// Encodings of an object's bytes (Ref.Encoding). Append-only.
const (
	// Bytes is a binary value stored as it is.
	Bytes = "bytes"
	// MsgPack is any value stored in MessagePack.
	MsgPack = "msgpack"
	// JSON is any value stored as JSON text (read, never written, by this
	// project).
	JSON = "json"
)

// Ref is a reference to an object of a JetStream object bucket.
type Ref struct {
	Bucket   string
	Name     string
	Size     int64  // the object's size in bytes
	SHA256   string // the lower-case hex SHA-256 of the object's bytes
	Encoding string // Bytes, MsgPack or JSON
}

// Bounds on a reference's strings.
const (
	// MaxBucket bounds a bucket name (JetStream's stream names are shorter).
	MaxBucket = 256
	// MaxName bounds an object name.
	MaxName = 2048
)

// Tree returns r as the value that travels in its place:
// {"$obj": {"bucket", "name", "size", "sha256", "encoding"}}.
func (r Ref) Tree() map[string]any {
	return map[string]any{KeyObj: map[string]any{
		"bucket": r.Bucket, "name": r.Name, "size": r.Size, "sha256": r.SHA256, "encoding": r.Encoding,
	}}
}

// String names the object in messages: bucket/name.
func (r Ref) String() string { return r.Bucket + "/" + r.Name }

// Error is the error of a malformed reference.
type Error struct {
	Msg string
}

func (e *Error) Error() string { return "objref: " + e.Msg }

func bad(format string, args ...any) *Error { return &Error{Msg: fmt.Sprintf(format, args...)} }

// Parse reads the value of a reference's "$obj" key. Unknown keys are
// ignored; a missing or mistyped key, a size outside 0…2^53-1, a digest
// that is not 64 lower-case hex digits or an unknown encoding is an
// *Error.
func Parse(v any) (Ref, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return Ref{}, bad("%s: want map, got %s", KeyObj, kind(v))
	}
	var r Ref
	for _, f := range []struct {
		key string
		dst *string
		max int
	}{{"bucket", &r.Bucket, MaxBucket}, {"name", &r.Name, MaxName}, {"sha256", &r.SHA256, 64}, {"encoding", &r.Encoding, 16}} {
		s, ok := m[f.key].(string)
		switch {
		case !ok:
			return Ref{}, bad("%s.%s: want string, got %s", KeyObj, f.key, kind(m[f.key]))
		case s == "" || len(s) > f.max:
			return Ref{}, bad("%s.%s: want 1 to %d bytes, got %d", KeyObj, f.key, f.max, len(s))
		}
		*f.dst = s
	}
	size, ok := integer(m["size"])
	if !ok {
		return Ref{}, bad("%s.size: want an integer from 0 to 2^53-1, got %s", KeyObj, kind(m["size"]))
	}
	r.Size = size
	if !isHex(r.SHA256) {
		return Ref{}, bad("%s.sha256: want 64 lower-case hex digits", KeyObj)
	}
	switch r.Encoding {
	case Bytes, MsgPack, JSON:
	default:
		return Ref{}, bad("%s.encoding: %q is none of bytes, msgpack, json", KeyObj, r.Encoding)
	}
	return r, nil
}

// integer reads a protocol integer (0…2^53-1) as the codecs decode it.
func integer(v any) (int64, bool) {
	switch n := v.(type) {
	case int64:
		return n, n >= 0 && n <= 1<<53-1
	case uint64:
		return int64(n), n <= 1<<53-1
	case float64:
		return int64(n), n >= 0 && n <= 1<<53-1 && n == math.Trunc(n)
	}
	return 0, false
}

func isHex(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func kind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "string"
	case map[string]any:
		return "map"
	case []any:
		return "list"
	case bool:
		return "bool"
	case int64, uint64, float64:
		return "number"
	}
	return fmt.Sprintf("%T", v)
}

// special says whether m is a map whose only key is $obj or $lit, and
// which.
func special(m map[string]any) (key string, ok bool) {
	if len(m) != 1 {
		return "", false
	}
	if _, ok := m[KeyObj]; ok {
		return KeyObj, true
	}
	if _, ok := m[KeyLit]; ok {
		return KeyLit, true
	}
	return "", false
}

// IsRef says whether v is a reference: a map whose only key is $obj.
// Whether the reference is well formed is Parse's to say.
func IsRef(v any) bool {
	m, ok := v.(map[string]any)
	k, sp := special(m)
	return ok && sp && k == KeyObj
}
