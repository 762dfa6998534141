package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/mpreg/mpreg/schema"
)

// writeExplain prints a dry run's plan as a table, then its problems.
// A request with problems exits 1 (it would not run as it is).
func writeExplain(w io.Writer, resp *schema.Response) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "STEP\tFUN\tLOCS\tWAITS FOR\tCANDIDATES\tPICK")
	for _, s := range resp.Plan {
		candidates, pick := dashIfEmpty(s.Candidates), "-"
		if s.Node != nil {
			pick = *s.Node
		} else if s.Routable { // a caller from another account is not shown the nodes
			candidates, pick = hidden, hidden
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", s.Name, s.Fun, dashIfEmpty(s.Locs), dashIfEmpty(s.Deps), candidates, pick)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(resp.Problems) == 0 {
		fmt.Fprintln(w, "\nno problems: the request can run now")
	} else {
		fmt.Fprintf(w, "\n%d problem(s):\n", len(resp.Problems))
		for _, p := range resp.Problems {
			fmt.Fprintf(w, "  %s\n", p.Error())
		}
	}
	if len(resp.Warnings) > 0 {
		fmt.Fprintf(w, "\n%d warning(s):\n", len(resp.Warnings))
		for _, x := range resp.Warnings {
			fmt.Fprintf(w, "  %s\n", warningText(x))
		}
	}
	if len(resp.Problems) > 0 {
		return resp.Problems[0]
	}
	return nil
}

// warningText is a dry run's warning as one line.
func warningText(x schema.Warning) string {
	return fmt.Sprintf("step %s: %s: %s", x.Step, x.Key, x.Message)
}

// printWarnings writes a request's warnings on w, one line each.
func printWarnings(w io.Writer, warnings []schema.Warning) {
	for _, x := range warnings {
		fmt.Fprintf(w, "mpreg: warning: %s\n", warningText(x))
	}
}

// hidden stands for the nodes of a routable step that a dry run did not
// name (docs/PROTOCOL.md §5.1).
const hidden = "(hidden)"

func dashIfEmpty(l []string) string {
	if len(l) == 0 {
		return "-"
	}
	return strings.Join(l, ",")
}

// writeDot prints a dry run's plan as a Graphviz digraph: a node per step
// labelled "name: fun @ node", an edge from each step to each step that
// reads its result; a step no node can take is red and dashed. A request
// that does not plan (a cycle, an unknown $ref) prints nothing and returns
// its planning error, so that `| dot -Tsvg` renders no blank picture.
func writeDot(w io.Writer, resp *schema.Response) error {
	if err := planningError(resp); err != nil {
		return err
	}
	plan := resp.Plan
	var b strings.Builder
	b.WriteString("digraph mpreg {\n  rankdir=LR;\n  node [shape=box, fontname=\"Helvetica\"];\n")
	for _, s := range plan {
		at, style := "?", ", color=red, style=dashed"
		if s.Node != nil {
			at, style = *s.Node, ""
		} else if s.Routable {
			at, style = hidden, ""
		}
		fmt.Fprintf(&b, "  %s [label=%s%s];\n", dotID(s.Name), dotID(s.Name+": "+s.Fun+" @ "+at), style)
	}
	for _, s := range plan {
		for _, d := range s.Deps {
			fmt.Fprintf(&b, "  %s -> %s;\n", dotID(d), dotID(s.Name))
		}
	}
	b.WriteString("}\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// planningError is a dry run's problem that kept the request from being
// planned at all: anything but the NO_ROUTE of a step, which a plan shows.
func planningError(resp *schema.Response) *schema.Error {
	for _, p := range resp.Problems {
		if p.Code != schema.CodeNoRoute {
			return p
		}
	}
	return nil
}

// dotID quotes s as a DOT string.
func dotID(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s) + `"`
}
