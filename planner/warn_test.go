package planner_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mpreg/mpreg/planner"
	"github.com/mpreg/mpreg/schema"
)

func TestWarnings(t *testing.T) {
	for _, tc := range []struct {
		name string
		req  string
		want []schema.Warning
	}{
		{"a mistyped reference", `{"cmds": [{"name": "|a", "fun": "echo", "args": ["|frist"]}]}`,
			[]schema.Warning{{Step: "|a", Key: "cmds[0].args[0]",
				Message: `"|frist" starts with "|" but names no command: it is passed as the string itself`}}},
		{"swapped letters", `{"cmds": [{"name": "first", "fun": "echo", "args": [1]}, {"name": "b", "fun": "echo", "args": ["frist"]}]}`,
			[]schema.Warning{{Step: "b", Key: "cmds[1].args[0]", Near: "first",
				Message: `"frist" names no command but is one edit from "first": it is passed as the string itself`}}},
		{"one letter missing, in kwargs", `{"cmds": [{"name": "|first", "fun": "echo", "args": [1]}, {"name": "b", "fun": "f", "kwargs": {"x": 1, "y": "|frst"}}]}`,
			[]schema.Warning{{Step: "b", Key: "cmds[1].kwargs.y", Near: "|first",
				Message: `"|frst" names no command but is one edit from "|first": it is passed as the string itself`}}},
		{"one letter more, one replaced", `{"cmds": [{"name": "total", "fun": "f"}, {"name": "b", "fun": "f", "args": ["totals", "tital", "t0tal!"]}]}`,
			[]schema.Warning{
				{Step: "b", Key: "cmds[1].args[0]", Near: "total", Message: `"totals" names no command but is one edit from "total": it is passed as the string itself`},
				{Step: "b", Key: "cmds[1].args[1]", Near: "total", Message: `"tital" names no command but is one edit from "total": it is passed as the string itself`},
			}},
		{"references and plain strings", `{"cmds": [{"name": "|a", "fun": "f", "args": ["hello", "x"]}, {"name": "u", "fun": "f", "args": ["|a", "v", "AND ME TOO", 5, {"$ref": "|a"}, ["|nested"]]}]}`, nil},
		{"short names are not compared", `{"cmds": [{"name": "ab", "fun": "f"}, {"name": "c", "fun": "f", "args": ["ac", "abc"]}]}`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, planner.Warnings(decodeRequest(t, tc.req)))
		})
	}
}

// A request of many commands and many strings costs a bounded number of
// comparisons, and gives at most MaxWarnings.
func TestWarningsBounded(t *testing.T) {
	cmds := make([]string, 1000)
	for i := range cmds {
		args := make([]string, 200)
		for j := range args {
			args[j] = fmt.Sprintf(`"name%04d"`, (i+j)%1000+5000) // one edit from no name, same length as all
		}
		cmds[i] = fmt.Sprintf(`{"name": "name%04d", "fun": "f", "args": [%s]}`, i, strings.Join(args, ","))
	}
	w := planner.Warnings(decodeRequest(t, `{"cmds": [`+strings.Join(cmds, ",")+`]}`))
	require.LessOrEqual(t, len(w), planner.MaxWarnings)

	many := make([]string, 100)
	for i := range many {
		many[i] = fmt.Sprintf(`"|x%d"`, i)
	}
	w = planner.Warnings(decodeRequest(t, `{"cmds": [{"name": "a", "fun": "f", "args": [`+strings.Join(many, ",")+`]}]}`))
	require.Len(t, w, planner.MaxWarnings)
}
