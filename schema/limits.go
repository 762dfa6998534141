package schema

import (
	"strconv"
	"unicode/utf8"
)

// Bounds on the strings of the wire messages (docs/PROTOCOL.md §1 and §9).
// Every message read from the network is checked against them before any
// of its strings is logged, stored, or used in a subject.
const (
	// MaxIDLen bounds cluster and node ids, which are subject tokens.
	MaxIDLen = 64
	// MaxRequestIDLen bounds an rpc request's id.
	MaxRequestIDLen = 256
	// MaxExecIDLen bounds an exec id, "<rpc id>/<step name>".
	MaxExecIDLen = 1024
	// MaxInstanceLen bounds a process's instance nonce (hello, heartbeat,
	// goodbye).
	MaxInstanceLen = 64
	// MaxAttemptLen bounds an exec request's attempt token.
	MaxAttemptLen = 128
	// MaxFuns bounds the functions one hello announces.
	MaxFuns = 4096
	// MaxLocs bounds the locs of one function in a hello.
	MaxLocs = 64
	// MaxURLs is how many advertised_urls of a hello are kept.
	MaxURLs = 16
	// MaxMeta bounds the entries of hello.meta; MaxMetaKey and MaxMetaValue
	// bound each key and value, in bytes.
	MaxMeta      = 32
	MaxMetaKey   = 64
	MaxMetaValue = 1024
	// MaxProtoInt is the largest protocol integer (2^53-1): every JSON
	// parser, JavaScript's included, reads it exactly.
	MaxProtoInt = 1<<53 - 1

	maxRetryAfter  = 24 * 60 * 60 * 1000 // a day, in ms
	maxCodecs      = 16
	maxShortString = 64
	maxURLLen      = 512
)

// clipLen is how much of a bad value an error message quotes.
const clipLen = 64

// Clip quotes s for an error message or a log, cut to 64 bytes (on a rune
// boundary) with the full length named when it was longer: values read
// from the network may be megabytes long.
func Clip(s string) string {
	if len(s) <= clipLen {
		return strconv.Quote(s)
	}
	return strconv.Quote(s[:cutAt(s, clipLen)]) + "…(" + strconv.Itoa(len(s)) + " bytes)"
}

// cutAt returns where to cut s to keep at most n bytes without splitting a
// rune.
func cutAt(s string, n int) int {
	if len(s) <= n {
		return len(s)
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return n
}

// limitFlags are the flags of `mpreg node` and `mpreg server` that set the
// bounds of docs/PROTOCOL.md §10 an operator may change, by the bound's
// name on the wire (details.limit).
var limitFlags = map[string]string{
	"max_commands":       "--max-commands",
	"max_requests":       "--max-requests",
	"max_inflight":       "--max-inflight",
	"max_queue":          "--max-queue",
	"max_planning_bytes": "--max-planning-bytes",
	"max_result_bytes":   "--max-result-bytes",
	"max_object_bytes":   "--max-object-bytes",
}

// LimitText names a bound of docs/PROTOCOL.md §10 in a message: by its wire
// name and value ("max_commands=1000"; the name alone when value is 0),
// followed by the flag that sets it, when one does: "max_commands=1000
// (the node's --max-commands)". Callers read details.limit, never this.
func LimitText(name string, value int64) string {
	s := name
	if value > 0 {
		s += "=" + strconv.FormatInt(value, 10)
	}
	if flag, ok := limitFlags[name]; ok {
		s += " (the node's " + flag + ")"
	}
	return s
}
