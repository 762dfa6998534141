package client

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/mpreg/mpreg/schema"
)

// The response of an ended durable request is the one Run would have
// returned: an ended status always says whether it failed.
func TestResponseOf(t *testing.T) {
	boom := &schema.Error{Code: schema.CodeFunctionError, Message: "boom", Step: "b", Node: "n1"}
	stepErrs := map[string]*schema.Error{"b": boom}
	for name, tc := range map[string]struct {
		st   schema.Status
		want schema.Response
	}{
		"done": {
			st:   schema.Status{ID: "r", Status: schema.StatusDone, Planner: "n1", StepsDone: 2, Steps: 2, Result: map[string]any{"a": 1}},
			want: schema.Response{ID: "r", Results: map[string]any{"a": 1}},
		},
		"done, nothing kept": {
			st:   schema.Status{ID: "r", Status: schema.StatusDone},
			want: schema.Response{ID: "r", Results: map[string]any{}},
		},
		"done, on_error continue": {
			st:   schema.Status{ID: "r", Status: schema.StatusDone, Result: map[string]any{"a": 1}, Errors: stepErrs},
			want: schema.Response{ID: "r", Results: map[string]any{"a": 1}, Errors: stepErrs},
		},
		"failed": {
			st:   schema.Status{ID: "r", Status: schema.StatusFailed, Result: map[string]any{"a": 1}, Error: boom},
			want: schema.Response{ID: "r", Results: map[string]any{"a": 1}, Error: boom},
		},
		"failed, no error": {
			st: schema.Status{ID: "r", Status: schema.StatusFailed},
			want: schema.Response{ID: "r", Results: map[string]any{},
				Error: schema.Errorf(schema.CodeInternal, `durable request "r" failed without an error`)},
		},
		"cancelled": {
			st:   schema.Status{ID: "r", Status: schema.StatusCancelled, Error: &schema.Error{Code: schema.CodeCancelled, Message: "by its caller"}},
			want: schema.Response{ID: "r", Results: map[string]any{}, Error: &schema.Error{Code: schema.CodeCancelled, Message: "by its caller"}},
		},
		"cancelled, no error": {
			st: schema.Status{ID: "r", Status: schema.StatusCancelled},
			want: schema.Response{ID: "r", Results: map[string]any{},
				Error: schema.Errorf(schema.CodeCancelled, `durable request "r" was cancelled`)},
		},
	} {
		assert.Equal(t, &tc.want, responseOf(&tc.st), name)
	}
}
