// Package demo holds the functions a node offers with --demo, and the
// showcase that `mpreg demo` runs: an embedded NATS server, three nodes with
// different locs and a client, all in one process, and a tour of requests
// that shows dependencies, routing by loc, parallel steps and errors.
package demo

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/mpreg/mpreg/node"
	"github.com/mpreg/mpreg/schema"
)

// Funcs lists the functions Register adds, in the order the showcase prints
// them.
var Funcs = []string{"add", "upper", "sleep", "fail", "whoami", "panic", "blob", "sha256", "length", "tally", "flaky"}

// Register adds the demo functions to n:
//
//   - add(a, b): a + b; the sum of two integers is an integer, anything
//     else with a float is a float.
//   - upper(s): s in upper case.
//   - sleep(ms, value=null): waits ms milliseconds and returns value; it
//     returns early with the context's error when the step is cancelled.
//   - fail(message): returns an error whose text is message, so that the
//     caller gets FUNCTION_ERROR with that message.
//   - whoami(): the id of the node that ran the step.
//   - panic(message): panics with message; the node answers FUNCTION_PANIC
//     and keeps serving.
//   - blob(size, seed=0): size bytes where byte i is (i*31 + seed) mod
//     251; size is 0 to the node's Objects.MaxBytes, else INVALID_ARGUMENT.
//   - sha256(data): the lower-case hex SHA-256 of binary data, or of a
//     string's UTF-8 bytes.
//   - length(data): the number of bytes of binary data, or of a string's
//     UTF-8 bytes.
//   - tally(key): adds one to this node's count for key (a string) and
//     returns the new count.
//   - flaky(key, failures): FUNCTION_ERROR on its first failures calls
//     with key on this node, then the number of calls so far. It has a
//     retry policy (FlakyPolicy): a planner tries it again 100 ms, 200 ms,
//     400 ms and 800 ms after its failures, 5 attempts in all.
//
// tally and flaky count at most MaxCounterKeys keys per node.
//
// blob, sha256 and length stream (node.Blob): a value larger than the
// inline limit is generated into, or read from, the object bucket a piece
// at a time.
//
// Every parameter is named, so each function takes kwargs as well as
// positional arguments; all but fail, panic, tally and flaky are marked
// idempotent. Every node already offers echo(x) and echos(*args).
func Register(n *node.Node) error {
	id := n.ID()
	count := newCounters()
	regs := []struct {
		name       string
		fn         any
		params     []string
		required   []string // parameters of type any that may not be left out
		idempotent bool
		opts       []node.FuncOption
	}{
		{"add", add, []string{"a", "b"}, []string{"a", "b"}, true, nil},
		{"upper", strings.ToUpper, []string{"s"}, nil, true, nil},
		{"sleep", sleep, []string{"ms", "value"}, nil, true, nil},
		{"fail", func(message string) error { return errors.New(message) }, []string{"message"}, nil, false, nil},
		{"whoami", func() string { return id }, nil, nil, true, nil},
		{"panic", func(message string) any { panic(message) }, []string{"message"}, nil, false, nil},
		{"blob", blobFunc(n.Objects().MaxBytes), []string{"size", "seed"}, nil, true, nil},
		{"sha256", sha256Hex, []string{"data"}, nil, true, nil},
		{"length", length, []string{"data"}, nil, true, nil},
		{"tally", count.Tally, []string{"key"}, nil, false, nil},
		{"flaky", count.Flaky, []string{"key", "failures"}, nil, false, []node.FuncOption{node.WithRetry(FlakyPolicy)}},
	}
	for _, r := range regs {
		opts := []node.FuncOption{node.WithParams(r.params...)}
		if r.required != nil {
			opts = append(opts, node.Required(r.required...))
		}
		if r.idempotent {
			opts = append(opts, node.Idempotent())
		}
		opts = append(opts, r.opts...)
		if err := n.Register(r.name, r.fn, opts...); err != nil {
			return fmt.Errorf("demo: register %s: %w", r.name, err)
		}
	}
	return nil
}

// add sums two numbers of the value model: int64 + int64 stays int64 (an
// overflow is an error), any float makes the sum a float64.
func add(a, b any) (any, error) {
	x, xInt, err := number("a", a)
	if err != nil {
		return nil, err
	}
	y, yInt, err := number("b", b)
	if err != nil {
		return nil, err
	}
	if xInt && yInt {
		i, j := a.(int64), b.(int64)
		s := i + j
		if (s > i) != (j > 0) {
			return nil, fmt.Errorf("add: %d + %d overflows int64", i, j)
		}
		return s, nil
	}
	return x + y, nil
}

// number reads a numeric argument; isInt reports an int64.
func number(param string, v any) (f float64, isInt bool, err error) {
	switch n := v.(type) {
	case int64:
		return float64(n), true, nil
	case uint64:
		return float64(n), false, nil
	case float64:
		if math.IsNaN(n) || math.IsInf(n, 0) {
			return 0, false, invalidNumber(param, v)
		}
		return n, false, nil
	}
	return 0, false, invalidNumber(param, v)
}

func invalidNumber(param string, v any) *schema.Error {
	kind := "null"
	switch v.(type) {
	case nil:
	case string:
		kind = "string"
	case bool:
		kind = "bool"
	case []any:
		kind = "list"
	case map[string]any:
		kind = "map"
	default:
		kind = fmt.Sprintf("%T", v)
	}
	return &schema.Error{Code: schema.CodeInvalidArgument,
		Message: fmt.Sprintf("add: %s: want a number, got %s", param, kind),
		Details: map[string]any{"param": param}}
}

// maxSleep bounds sleep's ms: more would overflow a time.Duration, and no
// request's budget is that long.
const maxSleep = 24 * time.Hour

// sleep waits ms milliseconds, or until ctx is done, and returns value.
func sleep(ctx context.Context, ms int64, value any) (any, error) {
	if ms < 0 || ms > maxSleep.Milliseconds() {
		return nil, &schema.Error{Code: schema.CodeInvalidArgument,
			Message: fmt.Sprintf("sleep: ms must be 0 to %d, got %d", maxSleep.Milliseconds(), ms),
			Details: map[string]any{"param": "ms"}}
	}
	t := time.NewTimer(time.Duration(ms) * time.Millisecond)
	defer t.Stop()
	select {
	case <-t.C:
		return value, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
