package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nuid"

	"github.com/mpreg/mpreg/client"
	"github.com/mpreg/mpreg/codec"
	"github.com/mpreg/mpreg/planner"
	"github.com/mpreg/mpreg/schema"
)

// callCmd is `mpreg call`.
type callCmd struct {
	Fun       string        `arg:"" help:"The function to call."`
	Args      []string      `arg:"" optional:"" help:"Positional arguments: each is read as JSON when it is valid JSON, else taken as a string; @FILE sends a file's bytes (@- stdin's), by reference when big; @@X is the string @X. Put -- before arguments that start with '-'." placeholder:"ARG"`
	Kw        []string      `help:"A keyword argument K=V; V is read like ARG. Repeatable." placeholder:"K=V" sep:"none"`
	Out       string        `short:"o" name:"out" help:"Write the result to FILE instead of stdout: a binary result as its bytes, any other as the JSON mpreg would print." placeholder:"FILE"`
	Loc       []string      `help:"Run only on a node with this loc. Repeatable." placeholder:"L" sep:"none"`
	RouteWait time.Duration `help:"With no eligible node, wait this long for one (a node starting, a function registered) before NO_ROUTE." placeholder:"D"`
	Trace     bool          `help:"Print the request id, and where and when the step ran (node, attempt, start, queue, run, outcome), on stderr."`
	ID        string        `name:"id" help:"The request's id (default: a new one), by which mpreg cancel ID stops the call from elsewhere." placeholder:"ID"`
	Verbose   bool          `help:"Print the request id on stderr before sending it."`
	clientFlags
	requestFlags
}

// Run calls the function through the cluster's rpc subject and prints the
// result.
func (c *callCmd) Run(e *env) error {
	args, opts, err := c.arguments(e.stdin)
	if err != nil {
		return err
	}
	if len(c.Loc) > 0 {
		opts = append(opts, client.WithLocs(c.Loc...))
	}
	if c.RouteWait > 0 {
		opts = append(opts, client.WithRouteWait(c.RouteWait))
	}
	id := c.ID
	if id == "" {
		id = nuid.Next()
	}
	opts = append(opts, client.WithID(id))
	ctx, cancel := context.WithTimeout(e.ctx, c.Timeout)
	defer cancel()
	cl, err := connect(ctx, c.clientFlags, c.Codec, c.Timeout)
	if err != nil {
		return err
	}
	defer cl.Close()
	var trace client.Trace
	if c.Trace {
		opts = append(opts, client.WithTrace(&trace))
	}
	if c.Verbose || c.Trace {
		printID(e.stderr, id)
	}
	v, err := cl.Call(ctx, c.Fun, args, opts...)
	if c.Trace {
		printTrace(e.stderr, trace.Entries, trace.Truncated)
	}
	if err != nil {
		return err
	}
	if c.Out != "" {
		return writeResult(c.Out, v)
	}
	return printJSON(e.stdout, v)
}

// arguments reads the call's ARGs and --kw (see argValue).
func (c *callCmd) arguments(stdin io.Reader) ([]any, []client.CallOption, error) {
	args := make([]any, len(c.Args))
	for i, a := range c.Args {
		v, err := argValue(a, stdin)
		if err != nil {
			return nil, nil, err
		}
		args[i] = v
	}
	var opts []client.CallOption
	if len(c.Kw) > 0 {
		kw := make(map[string]any, len(c.Kw))
		for _, pair := range c.Kw {
			k, s, ok := strings.Cut(pair, "=")
			if !ok || k == "" {
				return nil, nil, usagef("--kw %q: want K=V", pair)
			}
			v, err := argValue(s, stdin)
			if err != nil {
				return nil, nil, err
			}
			kw[k] = v
		}
		opts = append(opts, client.WithKwargs(kw))
	}
	return args, opts, nil
}

// printID writes a request's id, by which mpreg cancel stops it.
func printID(w io.Writer, id string) {
	fmt.Fprintf(w, "mpreg: request %s\n", id)
}

// printTrace writes a trace as a table, and a line saying so when the
// planner cut it. A FETCHED column (the bytes a step fetched of values
// passed by reference) appears when any step fetched some.
func printTrace(w io.Writer, trace []schema.TraceEntry, truncated bool) {
	fetched := slices.ContainsFunc(trace, func(t schema.TraceEntry) bool { return t.FetchedBytes != 0 })
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	head := "STEP\tFUN\tNODE\tATTEMPT\tSTART\tQUEUE\tRUN\t"
	if fetched {
		head += "FETCHED\t"
	}
	fmt.Fprintln(tw, head+"OUTCOME")
	us := func(n int64) string { return (time.Duration(n) * time.Microsecond).String() }
	for _, t := range trace {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t", t.Step, t.Fun, t.Node, t.Attempt, us(t.StartUS), us(t.QueueUS), us(t.RunUS))
		if fetched {
			fmt.Fprintf(tw, "%s\t", formatByteSize(t.FetchedBytes))
		}
		fmt.Fprintf(tw, "%s\n", t.Code)
	}
	_ = tw.Flush()
	if truncated {
		fmt.Fprintln(w, "(trace truncated: the attempts that started later did not fit the reply)")
	}
}

// jsonOrString reads s as JSON when it is valid JSON, else as a string.
func jsonOrString(s string) any {
	if v, err := codec.JSON.Decode([]byte(s)); err == nil {
		return v
	}
	return s
}

// printJSON writes v as indented JSON and a newline.
func printJSON(w io.Writer, v any) error {
	data, err := codec.JSON.Encode(v)
	if err != nil {
		return fmt.Errorf("print result: %w", err)
	}
	var b bytes.Buffer
	if err := json.Indent(&b, data, "", "  "); err != nil {
		return fmt.Errorf("print result: %w", err)
	}
	b.WriteByte('\n')
	_, err = w.Write(b.Bytes())
	return err
}

// replyGrace is how much longer than a request's budget `mpreg run` waits
// for the reply.
const replyGrace = 2 * time.Second

// runCmd is `mpreg run`.
type runCmd struct {
	File     string `arg:"" help:"The request as JSON: a file, or - for stdin." placeholder:"FILE|-"`
	Trace    bool   `help:"Ask for the trace and print it as a table on stderr (step, fun, node, attempt, start, queue, run, outcome)."`
	Explain  bool   `help:"Run nothing: print the plan (each step's deps, candidate nodes and pick) and its problems as a table."`
	Progress bool   `help:"Show progress on stderr: steps done of all, the last to finish and where, elapsed (redrawn on a terminal, a line per step otherwise)."`
	Dot      bool   `help:"Run nothing: print the plan as Graphviz DOT (steps labelled name: fun @ node, edges for references, unroutable steps red)."`
	Verbose  bool   `help:"Print the request id (the file's, else a new one) on stderr before sending it."`
	Out      string `short:"o" name:"out" help:"Write the response's one result to FILE (a binary result as its bytes, any other as JSON) and leave it out of the response printed." placeholder:"FILE"`
	Durable  bool   `help:"Send the request durable (docs/PROTOCOL.md §4.8): the cluster records it, another node takes it over if its planner dies, an id runs once, and mpreg get ID reads its outcome later."`
	clientFlags
	requestFlags
}

// Run sends the request and prints the whole response, also when it holds
// an error.
func (c *runCmd) Run(e *env) error {
	req, err := readRequest(c.File, e.stdin)
	if err != nil {
		return err
	}
	c.apply(e.stderr, req)
	ctx, cancel := context.WithTimeout(e.ctx, time.Duration(req.TimeoutMS)*time.Millisecond+replyGrace)
	defer cancel()
	cl, err := connect(ctx, c.clientFlags, c.Codec, c.Timeout)
	if err != nil {
		return err
	}
	defer cl.Close()
	var resp *schema.Response
	if c.Progress {
		req.Progress = true
		p := newProgress(e.stderr)
		resp, err = cl.RunWithEvents(ctx, req, p.event)
		p.end()
	} else {
		resp, err = cl.Run(ctx, req)
	}
	if req.DryRun && err == nil {
		if c.Dot {
			return writeDot(e.stdout, resp)
		}
		return writeExplain(e.stdout, resp)
	}
	return printResponse(e, fullResponse(req.ID, resp, err), err, printOpts{out: c.Out, trace: c.Trace, order: cmdNames(req)})
}

// printOpts say how printResponse prints a response: -o FILE, --trace,
// and the order of the steps, for the one whose error the exit status
// names.
type printOpts struct {
	out   string
	trace bool
	order []string
}

// printResponse prints resp, the response of a request (err its error),
// as mpreg run does: its one result to o.out, when set and it succeeded;
// its trace on stderr with o.trace; the response as JSON on stdout. The
// error returned sets the exit status: err, or the first step error of a
// request that ran with on_error "continue".
func printResponse(e *env, resp *schema.Response, err error, o printOpts) error {
	if o.out != "" && err == nil {
		if err := outResult(o.out, resp); err != nil {
			return err
		}
	}
	if o.trace {
		printTrace(e.stderr, resp.Trace, resp.TraceTruncated)
	}
	if perr := printJSON(e.stdout, resp); perr != nil {
		return errors.Join(err, perr)
	}
	if err == nil {
		return firstStepError(o.order, resp)
	}
	return err
}

// cmdNames are the names of req's commands, in its order.
func cmdNames(req *schema.Request) []string {
	names := make([]string, len(req.Cmds))
	for i, cmd := range req.Cmds {
		names[i] = cmd.Name
	}
	return names
}

// apply sets what the flags ask of req, and prints on stderr its id
// (--verbose, --trace) and the warnings of its plan (unless --explain,
// which shows them with the plan). The request carries its own budget
// (timeout_ms, --timeout when it has none); the wait for the reply gets a
// little more, so that the cluster's TIMEOUT reply, with partial results,
// arrives first.
func (c *runCmd) apply(stderr io.Writer, req *schema.Request) {
	if req.TimeoutMS <= 0 {
		req.TimeoutMS = max(c.Timeout.Milliseconds(), 1)
	}
	if c.Trace {
		req.Trace = true
	}
	if c.Durable {
		req.Durable = true
	}
	if req.ID == "" {
		req.ID = nuid.Next() // known before sending, for --verbose and mpreg cancel
	}
	if c.Verbose || c.Trace {
		printID(stderr, req.ID)
	}
	if c.Explain || c.Dot {
		req.DryRun = true
	}
	if !c.Explain {
		printWarnings(stderr, planner.Warnings(req))
	}
}

// fullResponse returns resp with its results never null; with no response
// (no node, timeout…) one in the same shape, holding err, so that scripts
// always read {"id", "results"[, "error"]}.
func fullResponse(id string, resp *schema.Response, err error) *schema.Response {
	if resp == nil {
		resp = &schema.Response{ID: id, Results: map[string]any{}}
		var se *schema.Error
		if errors.As(err, &se) {
			resp.Error = se
		}
	}
	if resp.Results == nil {
		resp.Results = map[string]any{}
	}
	return resp
}

// firstStepError is, for a request that ran with on_error "continue" and
// some of whose steps did not, the error of the first of them (in order,
// the steps' names) that failed other than CANCELLED: the exit status
// says so. Nil otherwise.
func firstStepError(order []string, resp *schema.Response) error {
	for _, name := range order {
		if e := resp.Errors[name]; e != nil && e.Code != schema.CodeCancelled {
			return e
		}
	}
	return nil
}

// readRequest reads and checks the request in file (- for stdin).
func readRequest(file string, stdin io.Reader) (*schema.Request, error) {
	var data []byte
	var err error
	name := file
	if file == "-" {
		name = "stdin"
		data, err = io.ReadAll(stdin)
	} else {
		data, err = os.ReadFile(file)
	}
	if err != nil {
		return nil, usagef("read request: %w", err)
	}
	req, _, err := codec.ReadSized(codec.JSON, data, codec.MaxDecoded, schema.ReadRequest)
	if errors.Is(err, codec.ErrDecode) {
		return nil, usagef("%s: not valid JSON: %w", name, err)
	}
	if err != nil {
		// The same INVALID_REQUEST a node would answer, and the same exit
		// code as the checks only a node makes (cycles, duplicates).
		return nil, err
	}
	return req, nil
}

// cancelCmd is `mpreg cancel`.
type cancelCmd struct {
	ID   string        `arg:"" help:"The id of the request to stop."`
	Wait time.Duration `help:"How long to wait for a node that knew the id to answer." default:"1s"`
	clientFlags
}

// cancelQuiet is how long mpreg cancel waits for more answers after one.
const cancelQuiet = 100 * time.Millisecond

// Run sends the cancel and says which nodes stopped the request (its
// caller gets CANCELLED); none knew the id: exit 1.
func (c *cancelCmd) Run(e *env) error {
	ctx, cancel := context.WithTimeout(e.ctx, peersTimeout)
	defer cancel()
	cl, err := connect(ctx, c.clientFlags, "", peersTimeout)
	if err != nil {
		return err
	}
	defer cl.Close()
	wait, stop := context.WithTimeout(e.ctx, c.Wait)
	defer stop()
	nodes, err := cl.CancelWait(wait, c.ID, cancelQuiet)
	if err != nil {
		return err
	}
	if len(nodes) == 0 {
		return fmt.Errorf("no node knew request %s: none answered within %s", schema.Clip(c.ID), c.Wait)
	}
	_, err = fmt.Fprintf(e.stdout, "cancelled request %s on %s\n", schema.Clip(c.ID), strings.Join(nodes, ", "))
	return err
}
