package planner

import (
	"context"

	"github.com/mpreg/mpreg/schema"
)

// Explain says, for each step of p, what it waits for, which nodes could
// run it (candidates), which one r would pick now and so whether it is
// routable, without running anything (a dry run, docs/PROTOCOL.md §5.1). A
// step no node can take is a NO_ROUTE problem, as a run would report it.
func (p *Plan) Explain(ctx context.Context, r Router, candidates func(fun string, locs []string) []string) ([]schema.PlanStep, []*schema.Error) {
	steps := make([]schema.PlanStep, len(p.Steps))
	var problems []*schema.Error
	for i, s := range p.Steps {
		deps := make([]string, len(s.Deps))
		for j, d := range s.Deps {
			deps[j] = p.Steps[d].Name
		}
		steps[i] = schema.PlanStep{Name: s.Name, Fun: s.Fun, Locs: append([]string{}, s.Locs...), Deps: deps,
			Candidates: append([]string{}, candidates(s.Fun, s.Locs)...)}
		if node, ok := r.Route(ctx, s.Fun, s.Locs, nil); ok {
			steps[i].Node, steps[i].Routable = &node, true
			continue
		}
		problems = append(problems, noRoute(&Call{Step: s.Name, Fun: s.Fun, Locs: s.Locs}, 0))
	}
	return steps, problems
}
