package schema_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mpreg/mpreg/codec"
	"github.com/mpreg/mpreg/schema"
)

func TestErrorIsByCode(t *testing.T) {
	e := &schema.Error{Code: schema.CodeNoRoute, Message: "no live node offers echo", Step: "|a", Node: "n1"}
	require.True(t, errors.Is(e, schema.ErrNoRoute))
	require.False(t, errors.Is(e, schema.ErrTimeout))
	require.False(t, errors.Is(e, io.EOF))
	require.True(t, errors.Is(schema.Errorf(schema.CodeTimeout, "after %d ms", 5), schema.ErrTimeout))

	var nilErr *schema.Error
	require.False(t, nilErr.Is(schema.ErrNoRoute))
	require.False(t, e.Is((*schema.Error)(nil)))
}

func TestSentinelsCoverEveryCode(t *testing.T) {
	sentinels := []*schema.Error{
		schema.ErrInvalidRequest, schema.ErrUnsupportedCodec, schema.ErrNoRoute, schema.ErrInvalidArgument,
		schema.ErrFunctionError, schema.ErrFunctionPanic, schema.ErrTimeout, schema.ErrCancelled,
		schema.ErrNodeUnavailable, schema.ErrPayloadTooLarge, schema.ErrUnauthenticated,
		schema.ErrPermissionDenied, schema.ErrShuttingDown, schema.ErrOverloaded, schema.ErrInternal,
		schema.ErrStoreUnavailable,
	}
	require.Len(t, schema.Codes, len(sentinels))
	seen := map[schema.Code]bool{}
	for i, c := range schema.Codes {
		require.True(t, c.Valid(), c)
		require.False(t, seen[c], "duplicate code %s", c)
		seen[c] = true
		require.Equal(t, c, sentinels[i].Code)
		require.ErrorIs(t, &schema.Error{Code: c, Message: "x"}, sentinels[i])
		for j, other := range sentinels {
			if j != i {
				require.NotErrorIs(t, &schema.Error{Code: c}, other)
			}
		}
	}
	require.False(t, schema.Code("NOPE").Valid())
	require.False(t, schema.Code("").Valid())
}

func TestErrorWrapping(t *testing.T) {
	e := (&schema.Error{Code: schema.CodeNoRoute, Message: "no node"}).WithStep("|a", "n1")
	wrapped := fmt.Errorf("planner: step %s: %w", "|a", e)
	twice := fmt.Errorf("client: %w", wrapped)

	require.True(t, errors.Is(twice, schema.ErrNoRoute))
	require.False(t, errors.Is(twice, schema.ErrInternal))

	var got *schema.Error
	require.True(t, errors.As(twice, &got))
	require.Same(t, e, got)
	require.Equal(t, "|a", got.Step)
	require.Equal(t, "n1", got.Node)

	// Both causes count with %w: %w.
	both := fmt.Errorf("%w: %w", schema.ErrCancelled, io.EOF)
	require.ErrorIs(t, both, schema.ErrCancelled)
	require.ErrorIs(t, both, io.EOF)
}

func TestErrorString(t *testing.T) {
	cases := []struct {
		err  *schema.Error
		want string
	}{
		{&schema.Error{Code: schema.CodeNoRoute, Message: "msg", Step: "|a", Node: "n1"}, "NO_ROUTE: msg (step |a on node n1)"},
		{&schema.Error{Code: schema.CodeNoRoute, Message: "msg", Step: "|a"}, "NO_ROUTE: msg (step |a)"},
		{&schema.Error{Code: schema.CodeNodeUnavailable, Message: "gone", Node: "n2"}, "NODE_UNAVAILABLE: gone (node n2)"},
		{&schema.Error{Code: schema.CodeTimeout}, "TIMEOUT"},
		{schema.Errorf(schema.CodeInvalidRequest, "cmds: %s", "required key missing"), "INVALID_REQUEST: cmds: required key missing"},
		{nil, "<nil>"},
	}
	for _, tc := range cases {
		require.Equal(t, tc.want, tc.err.Error())
	}
}

func TestWithStep(t *testing.T) {
	orig := &schema.Error{Code: schema.CodeFunctionError, Message: "boom", Node: "n0"}
	withNode := orig.WithStep("|a", "n1")
	require.Equal(t, "|a", withNode.Step)
	require.Equal(t, "n1", withNode.Node)
	keepNode := orig.WithStep("|b", "")
	require.Equal(t, "n0", keepNode.Node, "an empty node keeps the one set")
	require.Empty(t, orig.Step, "the original is not changed")
	require.Equal(t, "n0", orig.Node)
	require.NotSame(t, schema.ErrTimeout, schema.ErrTimeout.WithStep("|a", ""))
	require.Empty(t, schema.ErrTimeout.Step, "sentinels stay clean")
}

func TestAsError(t *testing.T) {
	require.Nil(t, schema.AsError(nil))

	e := &schema.Error{Code: schema.CodeOverloaded, Message: "full"}
	require.Same(t, e, schema.AsError(fmt.Errorf("wrapped: %w", e)))

	plain := schema.AsError(errors.New("disk on fire"))
	require.Equal(t, schema.CodeInternal, plain.Code)
	require.Equal(t, "disk on fire", plain.Message)
	require.ErrorIs(t, plain, schema.ErrInternal)
}

// The error object survives both codecs and reads back with ParseError.
func TestErrorWireForm(t *testing.T) {
	e := &schema.Error{Code: schema.CodeNoRoute, Message: "no live node offers echo with locs [gpu]",
		Step: "|third", Details: map[string]any{"fun": "echo", "locs": []any{"gpu"}}}
	for _, c := range []codec.Codec{codec.JSON, codec.MsgPack} {
		b, err := c.Encode(e)
		require.NoError(t, err)
		v, err := c.Decode(b)
		require.NoError(t, err)
		require.NotContains(t, v, "node", "empty node is omitted")
		got, err := schema.ParseError(v, "error")
		require.NoError(t, err)
		require.Equal(t, e, got)
	}
	b, err := codec.JSON.Encode(&schema.Error{Code: schema.CodeTimeout, Message: "late"})
	require.NoError(t, err)
	require.JSONEq(t, `{"code":"TIMEOUT","message":"late"}`, string(b))
}

// A code outside §5 from a peer becomes INTERNAL, keeping the peer's code
// and details, so that callers switching on the list never meet it.
func TestParseErrorUnknownCode(t *testing.T) {
	e, err := schema.ParseError(map[string]any{"code": "TEAPOT", "message": "short and stout", "details": map[string]any{"a": int64(1)}}, "error")
	require.NoError(t, err)
	require.Equal(t, schema.CodeInternal, e.Code)
	require.Equal(t, map[string]any{"code": "TEAPOT", "details": map[string]any{"a": int64(1)}}, e.Details)
	require.Contains(t, e.Message, "short and stout")

	e, err = schema.ParseError(map[string]any{"code": strings.Repeat("X", 5000)}, "error")
	require.NoError(t, err)
	require.Equal(t, schema.CodeInternal, e.Code)
	require.Less(t, len(e.Message), 200)

	e, err = schema.ParseError(map[string]any{"code": "NO_ROUTE", "message": "m"}, "error")
	require.NoError(t, err)
	require.Equal(t, schema.CodeNoRoute, e.Code, "known codes stay")
}

// An error keeps its Go cause for errors.Is and errors.As (the wire carries
// only the text); an inner error object is kept as text, so that errors.Is
// matches the outer code only.
func TestWrapKeepsCause(t *testing.T) {
	e := schema.Wrap(schema.CodeNodeUnavailable, context.DeadlineExceeded, "exec on node %s", "n1")
	require.Equal(t, "exec on node n1: context deadline exceeded", e.Message)
	require.ErrorIs(t, e, context.DeadlineExceeded)
	require.ErrorIs(t, e, schema.ErrNodeUnavailable)
	require.ErrorIs(t, e.WithStep("s", "n1"), context.DeadlineExceeded, "copies keep the cause")

	inner := schema.Wrap(schema.CodeInternal, schema.Errorf(schema.CodeTimeout, "t"), "bad reply")
	require.ErrorIs(t, inner, schema.ErrInternal)
	require.NotErrorIs(t, inner, schema.ErrTimeout)
	require.Equal(t, "bad reply: TIMEOUT: t", inner.Message)
	require.Equal(t, "x", schema.Wrap(schema.CodeInternal, nil, "x").Message)
}

func TestLimitText(t *testing.T) {
	for _, tc := range []struct {
		name  string
		value int64
		want  string
	}{
		{"max_commands", 1000, "max_commands=1000 (the node's --max-commands)"},
		{"max_requests", 4096, "max_requests=4096 (the node's --max-requests)"},
		{"max_inflight", 2, "max_inflight=2 (the node's --max-inflight)"},
		{"max_queue", 4, "max_queue=4 (the node's --max-queue)"},
		{"max_planning_bytes", 0, "max_planning_bytes (the node's --max-planning-bytes)"},
		{"max_result_bytes", 512, "max_result_bytes=512 (the node's --max-result-bytes)"},
		{"max_depth", 64, "max_depth=64"},
	} {
		if got := schema.LimitText(tc.name, tc.value); got != tc.want {
			t.Errorf("LimitText(%q, %d) = %q, want %q", tc.name, tc.value, got, tc.want)
		}
	}
}
