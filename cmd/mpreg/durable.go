package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/mpreg/mpreg/client"
	"github.com/mpreg/mpreg/planner"
	"github.com/mpreg/mpreg/schema"
)

// durableCmds are the commands of durable requests (docs/PROTOCOL.md
// §4.8): submit one, ask where it is, read its outcome.
type durableCmds struct {
	Submit submitCmd `cmd:"" help:"Hand a request (a JSON file or stdin, as mpreg run reads it) to the cluster as a durable request and print its id; mpreg status and mpreg get read it later."`
	Status statusCmd `cmd:"" help:"Print where a durable request is: accepted, running, done, failed, cancelled or unknown, its planner and steps done."`
	Get    getCmd    `cmd:"" help:"Print a durable request's response as mpreg run does, with the same exit codes; --wait waits for it to end."`
}

// submitCmd is `mpreg submit`.
type submitCmd struct {
	File      string        `arg:"" help:"The request as JSON: a file, or - for stdin." placeholder:"FILE|-"`
	ID        string        `name:"id" help:"The request's id (default: the file's, else a new one). An id runs once: submitting it again runs nothing." placeholder:"ID"`
	ResultTTL time.Duration `help:"How long the cluster keeps the outcome once the request ended (result_ttl_ms; default the cluster's, 24h)." placeholder:"D"`
	Timeout   time.Duration `help:"Budget for connecting and the submission. The request's own budget is its timeout_ms (the cluster's default without one)." default:"30s"`
	Codec     string        `help:"Codec of the request: json or msgpack." enum:"json,msgpack" default:"msgpack"`
	clientFlags
}

// Run submits the request and prints its id alone on stdout; a refusal is
// printed as mpreg run prints errors, with exit 1.
func (c *submitCmd) Run(e *env) error {
	req, err := readRequest(c.File, e.stdin)
	if err != nil {
		return err
	}
	if c.ID != "" {
		req.ID = c.ID
	}
	if c.ResultTTL > 0 {
		req.ResultTTLMS = max(c.ResultTTL.Milliseconds(), 1)
	}
	printWarnings(e.stderr, planner.Warnings(req))
	ctx, cancel := context.WithTimeout(e.ctx, c.Timeout)
	defer cancel()
	cl, err := connect(ctx, c.clientFlags, c.Codec, c.Timeout)
	if err != nil {
		return err
	}
	defer cl.Close()
	st, err := cl.Submit(ctx, req)
	if err != nil {
		return err
	}
	if st.Status != schema.StatusAccepted {
		// The id was submitted before: nothing new runs.
		fmt.Fprintf(e.stderr, "mpreg: request %s was submitted before: %s\n", schema.Clip(st.ID), statusLine(st))
	}
	_, err = fmt.Fprintln(e.stdout, st.ID)
	return err
}

// statusCmd is `mpreg status`.
type statusCmd struct {
	ID      string        `arg:"" help:"The id of the durable request."`
	JSON    bool          `name:"json" help:"Print the whole status as JSON (id, status, planner, steps_done, steps, result, errors, error)."`
	Timeout time.Duration `help:"Budget for connecting and the query." default:"30s"`
	clientFlags
}

// Run prints the request's status: one line, or JSON. An id of no durable
// request of this caller prints "unknown" and exits 1.
func (c *statusCmd) Run(e *env) error {
	ctx, cancel := context.WithTimeout(e.ctx, c.Timeout)
	defer cancel()
	cl, err := connect(ctx, c.clientFlags, "", c.Timeout)
	if err != nil {
		return err
	}
	defer cl.Close()
	st, err := cl.Status(ctx, c.ID)
	if err != nil {
		return err
	}
	if c.JSON {
		err = printJSON(e.stdout, st)
	} else {
		_, err = fmt.Fprintln(e.stdout, statusLine(st))
	}
	if err == nil && st.Status == schema.StatusUnknown {
		err = &client.StatusError{Status: st}
	}
	return err
}

// statusLine is a status in one line: "running  planner=n2  steps 3/10",
// and the error of a request that failed.
func statusLine(st *schema.Status) string {
	if st.Status == schema.StatusUnknown {
		return st.Status
	}
	parts := []string{st.Status}
	if st.Planner != "" {
		parts = append(parts, "planner="+st.Planner)
	}
	parts = append(parts, fmt.Sprintf("steps %d/%d", st.StepsDone, st.Steps))
	if st.Error != nil {
		parts = append(parts, st.Error.Error())
	}
	return strings.Join(parts, "  ")
}

// getCmd is `mpreg get`.
type getCmd struct {
	ID      string        `arg:"" help:"The id of the durable request."`
	Wait    bool          `help:"Wait for the request to end, up to --timeout."`
	Timeout time.Duration `help:"Budget for connecting and the query; with --wait, for the request to end." default:"30s"`
	Out     string        `short:"o" name:"out" help:"Write the response's one result to FILE (a binary result as its bytes, any other as JSON) and leave it out of the response printed." placeholder:"FILE"`
	clientFlags
}

// Run prints the request's response as mpreg run does, with its exit
// codes. A request that has not ended prints nothing on stdout and exits
// 1 saying where it is.
func (c *getCmd) Run(e *env) error {
	ctx, cancel := context.WithTimeout(e.ctx, c.Timeout)
	defer cancel()
	cl, err := connect(ctx, c.clientFlags, "", c.Timeout)
	if err != nil {
		return err
	}
	defer cl.Close()
	resp, err := cl.Get(ctx, c.ID, c.Wait)
	var se *client.StatusError
	switch {
	case errors.As(err, &se) && errors.Is(err, client.ErrNotEnded) && c.Wait:
		return fmt.Errorf("%w (waited %s: --timeout)", err, c.Timeout)
	case errors.As(err, &se) && errors.Is(err, client.ErrNotEnded):
		return fmt.Errorf("%w (mpreg get --wait waits for it)", err)
	case errors.As(err, &se):
		return err
	}
	resp = fullResponse(c.ID, resp, err)
	return printResponse(e, resp, err, printOpts{out: c.Out, order: slices.Sorted(maps.Keys(resp.Errors))})
}
