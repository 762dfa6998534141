package planner_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/mpreg/mpreg/planner"
	"github.com/mpreg/mpreg/schema"
)

// These benchmarks measure the planner's own overhead with an in-memory
// executor. The planner never touches NATS, so there is no raw nc.Request
// to compare with here; end-to-end benchmarks live with the node.

// chainRequest returns a request of n steps, each referring to the one
// before it.
func chainRequest(b *testing.B, n int) *schema.Request {
	parts := []string{`{"name": "s0", "fun": "echo", "args": ["start"]}`}
	for i := 1; i < n; i++ {
		parts = append(parts, fmt.Sprintf(`{"name": "s%d", "fun": "echo", "args": ["s%d"]}`, i, i-1))
	}
	return decodeRequest(b, `{"cmds": [`+strings.Join(parts, ",")+`]}`)
}

func BenchmarkPlan(b *testing.B) {
	for _, bc := range []struct {
		name string
		req  *schema.Request
	}{
		{"readme", decodeRequest(b, readmeRequest)},
		{"chain10", chainRequest(b, 10)},
		{"chain1000", chainRequest(b, 1000)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := planner.New(bc.req, planner.Limits{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkRunChain10(b *testing.B) {
	p, err := planner.New(chainRequest(b, 10), planner.Limits{})
	if err != nil {
		b.Fatal(err)
	}
	echo := values(func(_ context.Context, _ string, c *planner.Call) (any, error) {
		return c.Args[0], nil
	})
	one := planner.RouterFunc(func(context.Context, string, []string, []string) (string, bool) { return "n1", true })
	r := &planner.Runner{Router: one, Executor: echo}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		res, err := runOf(ctx, r, p)
		if err != nil {
			b.Fatal(err)
		}
		if res["s9"] != "start" {
			b.Fatalf("results %v", res)
		}
	}
}

func BenchmarkRunFanOut10(b *testing.B) {
	parts := make([]string, 0, 11)
	args := make([]string, 0, 10)
	for i := range 10 {
		parts = append(parts, fmt.Sprintf(`{"name": "s%d", "fun": "echo", "args": [%d]}`, i, i))
		args = append(args, fmt.Sprintf(`"s%d"`, i))
	}
	parts = append(parts, `{"name": "join", "fun": "echos", "args": [`+strings.Join(args, ",")+`]}`)
	p, err := planner.New(decodeRequest(b, `{"cmds": [`+strings.Join(parts, ",")+`]}`), planner.Limits{})
	if err != nil {
		b.Fatal(err)
	}
	exec := values(func(_ context.Context, _ string, c *planner.Call) (any, error) {
		if c.Fun == "echos" {
			return c.Args, nil
		}
		return c.Args[0], nil
	})
	one := planner.RouterFunc(func(context.Context, string, []string, []string) (string, bool) { return "n1", true })
	r := &planner.Runner{Router: one, Executor: exec}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := runOf(ctx, r, p); err != nil {
			b.Fatal(err)
		}
	}
}
