package schema

import (
	"errors"
	"fmt"
	"strings"
)

// Code is a stable error code of docs/PROTOCOL.md §5. Clients switch on Code,
// never on Message.
//
// The list is append-only: codes are part of the wire contract.
type Code string

// The error codes of docs/PROTOCOL.md §5.
const (
	CodeInvalidRequest   Code = "INVALID_REQUEST"
	CodeUnsupportedCodec Code = "UNSUPPORTED_CODEC"
	CodeNoRoute          Code = "NO_ROUTE"
	CodeInvalidArgument  Code = "INVALID_ARGUMENT"
	CodeFunctionError    Code = "FUNCTION_ERROR"
	CodeFunctionPanic    Code = "FUNCTION_PANIC"
	CodeTimeout          Code = "TIMEOUT"
	CodeCancelled        Code = "CANCELLED"
	CodeNodeUnavailable  Code = "NODE_UNAVAILABLE"
	CodePayloadTooLarge  Code = "PAYLOAD_TOO_LARGE"
	CodeUnauthenticated  Code = "UNAUTHENTICATED"
	CodePermissionDenied Code = "PERMISSION_DENIED"
	CodeShuttingDown     Code = "SHUTTING_DOWN"
	CodeOverloaded       Code = "OVERLOADED"
	CodeInternal         Code = "INTERNAL"
	// CodeStoreUnavailable: a durable request (or a status query) needs
	// JetStream, which the node does not have or cannot reach.
	CodeStoreUnavailable Code = "STORE_UNAVAILABLE"
)

// Codes lists every code in the order of docs/PROTOCOL.md §5.
var Codes = []Code{
	CodeInvalidRequest, CodeUnsupportedCodec, CodeNoRoute, CodeInvalidArgument,
	CodeFunctionError, CodeFunctionPanic, CodeTimeout, CodeCancelled,
	CodeNodeUnavailable, CodePayloadTooLarge, CodeUnauthenticated,
	CodePermissionDenied, CodeShuttingDown, CodeOverloaded, CodeInternal,
	CodeStoreUnavailable,
}

// Valid reports whether c is one of the codes of docs/PROTOCOL.md §5.
func (c Code) Valid() bool {
	for _, k := range Codes {
		if k == c {
			return true
		}
	}
	return false
}

// Error is the error object of docs/PROTOCOL.md §5. It is both the wire form and
// the Go error returned by this project's packages; match it with errors.Is
// against the sentinels below (which compares Code) or errors.As to read the
// step, node and details.
type Error struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
	Step    string `json:"step,omitempty"`
	Node    string `json:"node,omitempty"`
	Details any    `json:"details,omitempty"`

	cause error // what went wrong inside this process (not sent)
}

// Sentinels, one per code, for errors.Is.
var (
	ErrInvalidRequest   = &Error{Code: CodeInvalidRequest}
	ErrUnsupportedCodec = &Error{Code: CodeUnsupportedCodec}
	ErrNoRoute          = &Error{Code: CodeNoRoute}
	ErrInvalidArgument  = &Error{Code: CodeInvalidArgument}
	ErrFunctionError    = &Error{Code: CodeFunctionError}
	ErrFunctionPanic    = &Error{Code: CodeFunctionPanic}
	ErrTimeout          = &Error{Code: CodeTimeout}
	ErrCancelled        = &Error{Code: CodeCancelled}
	ErrNodeUnavailable  = &Error{Code: CodeNodeUnavailable}
	ErrPayloadTooLarge  = &Error{Code: CodePayloadTooLarge}
	ErrUnauthenticated  = &Error{Code: CodeUnauthenticated}
	ErrPermissionDenied = &Error{Code: CodePermissionDenied}
	ErrShuttingDown     = &Error{Code: CodeShuttingDown}
	ErrOverloaded       = &Error{Code: CodeOverloaded}
	ErrInternal         = &Error{Code: CodeInternal}
	ErrStoreUnavailable = &Error{Code: CodeStoreUnavailable}
)

// OutcomeOK is how traces and metrics name work that succeeded, beside the
// error codes of failed work.
const OutcomeOK = "ok"

// Outcome is OutcomeOK for a nil e, else e's code.
func Outcome(e *Error) string {
	if e == nil {
		return OutcomeOK
	}
	return string(e.Code)
}

// Errorf returns an *Error with code c and a formatted message.
func Errorf(c Code, format string, args ...any) *Error {
	return &Error{Code: c, Message: fmt.Sprintf(format, args...)}
}

// Wrap returns an *Error with code c whose message is the formatted text,
// ": ", and cause's text (cause's text alone when the format is empty), and
// whose Unwrap returns cause: the wire carries the text, the process keeps
// the cause for errors.Is and errors.As. A cause that holds an *Error is
// kept as text only, so that errors.Is matches the outer code, never an
// inner one.
func Wrap(c Code, cause error, format string, args ...any) *Error {
	msg := fmt.Sprintf(format, args...)
	if cause == nil {
		return &Error{Code: c, Message: msg}
	}
	if msg == "" {
		msg = cause.Error()
	} else {
		msg += ": " + cause.Error()
	}
	return &Error{Code: c, Message: msg, cause: causeOf(cause)}
}

// causeOf is err as the cause of an *Error: nil when err holds an *Error,
// whose code errors.Is would otherwise match through the outer one.
func causeOf(err error) error {
	var inner *Error
	if errors.As(err, &inner) {
		return nil
	}
	return err
}

// Unwrap returns the error's cause inside this process, if any (an error
// read from the wire has none).
func (e *Error) Unwrap() error {
	if e == nil {
		return nil
	}
	return e.cause
}

// Error implements error as "CODE: message" with the step and node when set.
func (e *Error) Error() string {
	if e == nil {
		return "<nil>"
	}
	var b strings.Builder
	b.WriteString(string(e.Code))
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	if e.Step != "" {
		fmt.Fprintf(&b, " (step %s", e.Step)
		if e.Node != "" {
			fmt.Fprintf(&b, " on node %s", e.Node)
		}
		b.WriteString(")")
	} else if e.Node != "" {
		fmt.Fprintf(&b, " (node %s)", e.Node)
	}
	return b.String()
}

// Is reports whether target is an *Error with the same Code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && e != nil && t != nil && t.Code == e.Code
}

// WithStep returns a copy of e naming the step and, when not empty, the node.
func (e *Error) WithStep(step, node string) *Error {
	c := *e
	c.Step = step
	if node != "" {
		c.Node = node
	}
	return &c
}

// AsError converts any error to an *Error: an *Error found with errors.As is
// returned as is; anything else becomes code INTERNAL (see AsCode).
func AsError(err error) *Error { return AsCode(err, CodeInternal) }

// AsCode converts any error to an *Error: an *Error found with errors.As is
// returned as is; anything else becomes code c with the error's text, the
// error kept as its cause (see Wrap), so that errors.Is and errors.As
// still find it. It is the one place an error becomes an error object.
func AsCode(err error, c Code) *Error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return Wrap(c, err, "")
}

// ParseError reads an error object from a decoded value.
func ParseError(v any, key string) (*Error, error) {
	e, err := readError(TreeReader(v), key)
	if err != nil {
		return nil, err
	}
	return e, nil
}
