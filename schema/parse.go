package schema

import (
	"fmt"
	"strconv"
	"unicode"
	"unicode/utf8"
)

// The Parse functions read a decoded value tree into a wire type: each is
// its Read function (read.go, readmore.go, readhello.go) over
// TreeReader. Unknown keys are ignored; a missing required key or a value
// of the wrong type is an *Error with code INVALID_REQUEST whose message
// and details.key name the key.

func join(prefix, key string) string {
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}

// KindOf names the kind of a decoded value as error messages do: "null",
// "bool", "number", "string", "binary", "list" or "map" (else its Go type).
func KindOf(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "bool"
	case int64, uint64, float64, int, int8, int16, int32, uint, uint8, uint16, uint32, float32:
		return "number"
	case string:
		return "string"
	case []byte:
		return "binary"
	case []any:
		return "list"
	case map[string]any:
		return "map"
	}
	return fmt.Sprintf("%T", v)
}

func missing(key string) *Error {
	return &Error{
		Code:    CodeInvalidRequest,
		Message: fmt.Sprintf("%s: required key missing", key),
		Details: map[string]any{"key": key},
	}
}

func invalid(key, format string, args ...any) *Error {
	return &Error{
		Code:    CodeInvalidRequest,
		Message: key + ": " + fmt.Sprintf(format, args...),
		Details: map[string]any{"key": key},
	}
}

// cmdKeys are the keys of the first commands, made once: a request's
// commands are named in errors only.
var cmdKeys = func() []string {
	l := make([]string, 64)
	for i := range l {
		l[i] = fmt.Sprintf("cmds[%d]", i)
	}
	return l
}()

func cmdKey(i int) string {
	if i < len(cmdKeys) {
		return cmdKeys[i]
	}
	return fmt.Sprintf("cmds[%d]", i)
}

// ParsePlanned reads a stream's planned event.
func ParsePlanned(v any) (*Planned, error) { return ReadPlanned(TreeReader(v)) }

// ParseTraceEntry reads a stream's step event.
func ParseTraceEntry(v any) (*TraceEntry, error) {
	t := &TraceEntry{}
	if _, err := readStruct(TreeReader(v), t, "trace[0]", "trace[0]", traceFields); err != nil {
		return nil, err
	}
	return t, nil
}

// ParseRequest reads an RPC request (docs/PROTOCOL.md §4) from a decoded
// tree: ReadRequest over TreeReader(v).
func ParseRequest(v any) (*Request, error) {
	r, err := ReadRequest(TreeReader(v))
	if err != nil {
		return nil, err
	}
	return r, nil
}

// ParseResponse reads an RPC response (docs/PROTOCOL.md §5) from a decoded
// tree.
func ParseResponse(v any) (*Response, error) { return ReadResponse(TreeReader(v)) }

// ParseExecRequest reads an exec request (docs/PROTOCOL.md §6) from a
// decoded tree.
func ParseExecRequest(v any) (*ExecRequest, error) { return ReadExecRequest(TreeReader(v)) }

// ParseExecReply reads an exec reply (docs/PROTOCOL.md §6) from a decoded
// tree.
func ParseExecReply(v any) (*ExecReply, error) { return ReadExecReply(TreeReader(v)) }

// ParseCancel reads a cancel (see Cancel).
func ParseCancel(v any) (*Cancel, error) { return ReadCancel(TreeReader(v)) }

// ParseCancelRequest reads a CancelRequest.
func ParseCancelRequest(v any) (*CancelRequest, error) { return ReadCancelRequest(TreeReader(v)) }

// ParseCancelAnswer reads a node's answer to a cancel.
func ParseCancelAnswer(v any) (*CancelAnswer, error) { return ReadCancelAnswer(TreeReader(v)) }

// ParsePlannerAck reads a PlannerAck.
func ParsePlannerAck(v any) (*PlannerAck, error) { return ReadPlannerAck(TreeReader(v)) }

// ParseStatusRequest reads a status query (docs/PROTOCOL.md §4.8).
func ParseStatusRequest(v any) (*StatusRequest, error) { return ReadStatusRequest(TreeReader(v)) }

// ParseStatus reads a durable request's status (docs/PROTOCOL.md §4.8).
func ParseStatus(v any) (*Status, error) { return ReadStatus(TreeReader(v)) }

// ParseHello reads a hello (docs/PROTOCOL.md §7).
func ParseHello(v any) (*Hello, error) { return ReadHello(TreeReader(v)) }

// tooMany is the error of a list or map with more than max entries.
func tooMany(key string, n, maxEntries int) *Error {
	return &Error{Code: CodeInvalidRequest, Message: fmt.Sprintf("%s: %d entries, more than %d", key, n, maxEntries),
		Details: map[string]any{"key": key, "limit": key, "max": int64(maxEntries)}}
}

// ParseHeartbeat reads a heartbeat (docs/PROTOCOL.md §7).
func ParseHeartbeat(v any) (*Heartbeat, error) { return ReadHeartbeat(TreeReader(v)) }

// ParseGoodbye reads a goodbye (docs/PROTOCOL.md §7).
func ParseGoodbye(v any) (*Goodbye, error) { return ReadGoodbye(TreeReader(v)) }

// checkID checks a cluster or node id: 1–64 of [A-Za-z0-9_-]. Ids become
// NATS subject tokens (docs/PROTOCOL.md §2), so every id read from the network
// passes here before a subject is built from it.
func checkID(s string) *Error {
	if len(s) == 0 || len(s) > MaxIDLen {
		return Errorf(CodeInvalidRequest, "id %s must be 1 to %d characters", Clip(s), MaxIDLen)
	}
	for _, r := range s {
		if (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') && (r < '0' || r > '9') && r != '_' && r != '-' {
			return Errorf(CodeInvalidRequest, "id %s may hold only A-Z a-z 0-9 _ -", Clip(s))
		}
	}
	return nil
}

// tooLong is the error of a string read from key longer than max bytes.
func tooLong(key, limit string, maxBytes int) *Error {
	return &Error{Code: CodeInvalidRequest, Message: fmt.Sprintf("%s: longer than %d bytes", key, maxBytes),
		Details: map[string]any{"key": key, "limit": limit, "max": int64(maxBytes)}}
}

// checkFunName checks a function name: 1–128 printable characters, no
// spaces, no '.', '*' or '>'.
func checkFunName(s string) *Error {
	if err := checkPrintable(s, "function name"); err != nil {
		return err
	}
	for _, r := range s {
		if r == '.' || r == '*' || r == '>' {
			return Errorf(CodeInvalidRequest, "function name %q must not hold %q", s, r)
		}
	}
	return nil
}

// checkLoc checks a loc: 1–128 printable characters, no spaces.
func checkLoc(s string) *Error { return checkPrintable(s, "loc") }

func checkPrintable(s, what string) *Error {
	n := utf8.RuneCountInString(s)
	if n == 0 || n > 128 {
		return Errorf(CodeInvalidRequest, "%s %s must be 1 to 128 characters", what, Clip(s))
	}
	if !utf8.ValidString(s) {
		return Errorf(CodeInvalidRequest, "%s %s is not valid UTF-8", what, Clip(s))
	}
	for _, r := range s {
		if unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return Errorf(CodeInvalidRequest, "%s %s must hold only printable characters and no spaces", what, strconv.Quote(s))
		}
	}
	return nil
}

// CheckID checks a cluster or node id: 1–64 of [A-Za-z0-9_-]. The error is
// an *Error (INVALID_REQUEST).
func CheckID(s string) error { return nilIfNone(checkID(s)) }

// CheckFunName checks a function name: 1–128 printable characters, no
// spaces, no '.', '*' or '>'. The error is an *Error (INVALID_REQUEST).
func CheckFunName(s string) error { return nilIfNone(checkFunName(s)) }

// CheckLoc checks a loc: 1–128 printable characters, no spaces. The error
// is an *Error (INVALID_REQUEST).
func CheckLoc(s string) error { return nilIfNone(checkLoc(s)) }

// nilIfNone returns e as an error, nil when e is nil (never a typed nil).
func nilIfNone(e *Error) error {
	if e == nil {
		return nil
	}
	return e
}
