package demo

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
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mpreg/mpreg/bus"
	"github.com/mpreg/mpreg/client"
	"github.com/mpreg/mpreg/codec"
	"github.com/mpreg/mpreg/membership"
	"github.com/mpreg/mpreg/node"
	"github.com/mpreg/mpreg/planner"
	"github.com/mpreg/mpreg/schema"
)

// ErrUnexpected is returned by Showcase when a request did not end the way
// the showcase says it should (a wrong result, node or error code).
var ErrUnexpected = errors.New("demo: unexpected outcome")

// setupTimeout bounds starting the cluster and learning its nodes;
// stopTimeout bounds draining it.
const (
	setupTimeout = 10 * time.Second
	stopTimeout  = 5 * time.Second
)

// The showcase's nodes.
var showNodes = []struct {
	id   string
	locs []string
}{
	{"alpha", []string{"cpu"}},
	{"beta", []string{"gpu", "model-a"}},
	{"gamma", []string{"dataset-a", "cpu"}},
}

// Showcase starts an embedded NATS server on a random loopback port, three
// nodes (alpha: cpu; beta: gpu, model-a; gamma: dataset-a, cpu) with the
// demo functions and a client, all on in-process connections, and runs a
// tour of requests, writing each request, the node that ran each step, and
// the results or error to w. It shuts everything down before it returns.
//
// It returns ErrUnexpected (wrapped) when a request did not end as the
// showcase expects, and other errors when the cluster could not start or
// stop.
func Showcase(ctx context.Context, w io.Writer) (err error) {
	out := &printer{w: w}
	started := time.Now()
	sc, err := startShowCluster(ctx)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, sc.stop(ctx)) }()

	out.intro(sc.srv.ClientURL())
	scenes := scenes()
	var ok, failedOnPurpose int
	var surprises []error
	for i, scene := range scenes {
		o := send(ctx, sc.cl, sc.rec, scene)
		if ctx.Err() != nil {
			return fmt.Errorf("demo: %w", ctx.Err())
		}
		out.scene(i+1, len(scenes), scene, o)
		if e := scene.verify(o); e != nil {
			surprises = append(surprises, fmt.Errorf("%w: %s: %w", ErrUnexpected, scene.title, e))
			out.linef("  !! unexpected: %v", e)
		} else if scene.wantErr != "" {
			failedOnPurpose++
		} else {
			ok++
		}
	}
	if len(surprises) > 0 {
		out.linef("")
		out.linef("Demo FAILED: %d of %d requests did not end as expected.", len(surprises), len(scenes))
		return errors.Join(append(surprises, out.err)...)
	}
	if err := sc.stop(ctx); err != nil {
		return err
	}
	out.linef("")
	out.linef("Done in %s: %d requests, %d succeeded and %d failed as expected; nodes drained, server stopped.",
		time.Since(started).Round(time.Millisecond), len(scenes), ok, failedOnPurpose)
	return out.err
}

// showCluster is the showcase's cluster: a server, the nodes of showNodes
// and a following client, each on its own in-process connection.
type showCluster struct {
	srv     *bus.Server
	store   string // the server's JetStream store, removed by stop
	conns   []*nats.Conn
	nodes   []*node.Node
	cl      *client.Client
	rec     *recorder
	stopped bool
}

// startShowCluster starts the cluster and waits until every node and the
// client route to every node. On error it is stopped. The server runs
// JetStream, as `mpreg server` does, in a temporary directory that stop
// removes: the tour keeps nothing, and never shares a store with a server
// of the user's.
func startShowCluster(ctx context.Context) (_ *showCluster, err error) {
	store, err := os.MkdirTemp("", "mpreg-demo-")
	if err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	srv, err := bus.StartServer(bus.ServerConfig{Host: "127.0.0.1", Port: -1,
		JetStream: bus.JetStreamConfig{Enabled: true, StoreDir: store}})
	if err != nil {
		_ = os.RemoveAll(store)
		return nil, fmt.Errorf("demo: %w", err)
	}
	sc := &showCluster{srv: srv, store: store, rec: &recorder{byID: map[string][]planner.StepEvent{}}}
	defer func() {
		if err != nil {
			err = errors.Join(err, sc.stop(ctx))
		}
	}()
	sctx, cancel := context.WithTimeout(ctx, setupTimeout)
	defer cancel()
	if err := sc.createBucket(sctx); err != nil {
		return nil, err
	}
	tables := []*membership.Table{}
	for _, spec := range showNodes {
		n, err := sc.startNode(sctx, spec.id, spec.locs)
		if err != nil {
			return nil, err
		}
		tables = append(tables, n.Table())
	}
	cnc, err := sc.connect(sctx, "mpreg-demo-client")
	if err != nil {
		return nil, err
	}
	if sc.cl, err = client.Connect(sctx, client.Config{Conn: cnc, SyncQuiet: 50 * time.Millisecond}); err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	tables = append(tables, sc.cl.Table())
	if err := waitForNodes(sctx, tables, len(showNodes)); err != nil {
		return nil, err
	}
	return sc, nil
}

// createBucket creates the cluster's object bucket before the nodes start,
// so that they open it rather than all create it at once.
func (sc *showCluster) createBucket(ctx context.Context) error {
	nc, err := sc.connect(ctx, "mpreg-demo-setup")
	if err != nil {
		return err
	}
	js, err := jetstream.New(nc)
	if err == nil {
		_, err = bus.OpenObjects(ctx, js, bus.ObjectsConfig{Prefix: bus.DefaultPrefix, Cluster: bus.DefaultCluster})
	}
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	return nil
}

// connect opens an in-process connection to the server.
func (sc *showCluster) connect(ctx context.Context, name string) (*nats.Conn, error) {
	nc, err := bus.Connect(ctx, bus.ConnConfig{InProcess: sc.srv.NATS(), Name: name})
	if err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	sc.conns = append(sc.conns, nc)
	return nc, nil
}

// startNode starts a node with the demo functions.
func (sc *showCluster) startNode(ctx context.Context, id string, locs []string) (*node.Node, error) {
	nc, err := sc.connect(ctx, "mpreg-demo-"+id)
	if err != nil {
		return nil, err
	}
	n, err := node.New(nc, node.Config{
		NodeID: id,
		Name:   "demo " + id,
		Locs:   locs,
		Gossip: node.Gossip{SyncQuiet: 50 * time.Millisecond},
		Hooks:  node.Hooks{Observer: sc.rec},
	})
	if err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	if err := Register(n); err != nil {
		return nil, err
	}
	if err := n.Start(ctx); err != nil {
		return nil, fmt.Errorf("demo: start %s: %w", id, err)
	}
	sc.nodes = append(sc.nodes, n)
	return n, nil
}

// stop tears down in reverse: client, nodes (drained), connections,
// server. Only its first call does anything.
func (sc *showCluster) stop(ctx context.Context) error {
	if sc.stopped {
		return nil
	}
	sc.stopped = true
	sc.cl.Close()
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stopTimeout)
	defer cancel()
	var errs []error
	for _, n := range slices.Backward(sc.nodes) {
		if e := n.Drain(dctx); e != nil {
			errs = append(errs, fmt.Errorf("demo: node %s: %w", n.ID(), e))
		}
	}
	for _, nc := range sc.conns {
		nc.Close()
	}
	sc.srv.Shutdown()
	if e := os.RemoveAll(sc.store); e != nil {
		errs = append(errs, fmt.Errorf("demo: JetStream store: %w", e))
	}
	return errors.Join(errs...)
}

// waitForNodes waits until every table routes to n live nodes.
func waitForNodes(ctx context.Context, tables []*membership.Table, n int) error {
	for _, t := range tables {
		for {
			changed := t.Changed()
			if len(t.Eligible("whoami", nil)) >= n {
				break
			}
			select {
			case <-changed:
			case <-ctx.Done():
				return fmt.Errorf("demo: waiting for %d nodes (have %v): %w", n, t.Eligible("whoami", nil), ctx.Err())
			}
		}
	}
	return nil
}

// recorder is the planner.Observer shared by the showcase's nodes: it keeps
// every step event by request id, whichever node planned the request.
type recorder struct {
	mu   sync.Mutex
	byID map[string][]planner.StepEvent
}

var _ planner.Observer = (*recorder)(nil)

// StepDone records ev. It does not block.
func (r *recorder) StepDone(ev planner.StepEvent) {
	r.mu.Lock()
	r.byID[ev.RequestID] = append(r.byID[ev.RequestID], ev)
	r.mu.Unlock()
}

// take returns and forgets the events of request id, by start time.
func (r *recorder) take(id string) []planner.StepEvent {
	r.mu.Lock()
	evs := r.byID[id]
	delete(r.byID, id)
	r.mu.Unlock()
	slices.SortStableFunc(evs, func(a, b planner.StepEvent) int {
		if c := a.Start.Compare(b.Start); c != 0 {
			return c
		}
		return strings.Compare(a.Step, b.Step)
	})
	return evs
}

// outcome is what one request gave.
type outcome struct {
	sent    time.Time
	elapsed time.Duration
	resp    *schema.Response
	err     *schema.Error
	steps   []planner.StepEvent
}

// step returns the event of the named step.
func (o *outcome) step(name string) (planner.StepEvent, bool) {
	for _, ev := range o.steps {
		if ev.Step == name {
			return ev, true
		}
	}
	return planner.StepEvent{}, false
}

// fetched returns, by step, the bytes the steps fetched from the object
// bucket, when the request was traced.
func (o *outcome) fetched() map[string]int64 {
	out := map[string]int64{}
	if o.resp != nil {
		for _, e := range o.resp.Trace {
			out[e.Step] += e.FetchedBytes
		}
	}
	return out
}

func (o *outcome) results() map[string]any {
	if o.resp == nil {
		return nil
	}
	return o.resp.Results
}

// send runs one scene's request and collects its step events.
func send(ctx context.Context, cl *client.Client, rec *recorder, sc scene) *outcome {
	o := &outcome{sent: time.Now()}
	resp, err := cl.Run(ctx, sc.req)
	o.elapsed = time.Since(o.sent)
	o.resp = resp
	if err != nil {
		o.err = schema.AsError(err)
	}
	o.steps = rec.take(sc.req.ID)
	return o
}

// printer writes the showcase's text and keeps the first write error.
type printer struct {
	w   io.Writer
	err error
}

func (p *printer) linef(format string, args ...any) {
	if p.err != nil {
		return
	}
	_, p.err = fmt.Fprintf(p.w, format+"\n", args...)
}

func (p *printer) intro(url string) {
	p.linef("MPREG demo: one process runs an embedded NATS server, three nodes and a client.")
	p.linef("NATS listens on %s for the duration of the demo, with JetStream in a", url)
	p.linef("temporary directory that is removed at the end.")
	p.linef("")
	p.linef("Nodes:")
	for _, n := range showNodes {
		p.linef("  %-6s locs %v", n.id, n.locs)
	}
	p.linef("Every node offers echo(x) and echos(*args), plus the demo functions:")
	p.linef("  add(a, b), upper(s), sleep(ms, value), fail(message), whoami(), panic(message),")
	p.linef("  blob(size, seed), sha256(data), length(data).")
	p.linef("")
	p.linef("Each request goes to the cluster's rpc subject. The node that takes it plans the")
	p.linef("steps, starts each one as soon as the steps it refers to have finished, and sends")
	p.linef("it to a live node that offers the function with every loc the step asks for.")
	p.linef("Among equally loaded nodes the planning node itself wins (no network hop), so")
	p.linef("steps without locs often all run where the request was planned.")
	p.linef("In the step tables, start is counted from sending the request, took is how long")
	p.linef("the step ran. To send a request yourself, save it to a file and run")
	p.linef("`mpreg run FILE` against `mpreg server --demo`.")
}

func (p *printer) scene(i, n int, sc scene, o *outcome) {
	p.linef("")
	title := fmt.Sprintf("=== %d/%d  %s ", i, n, sc.title)
	p.linef("%s%s", title, strings.Repeat("=", max(3, 78-len(title))))
	for _, l := range sc.about {
		p.linef("%s", l)
	}
	p.linef("request:")
	p.linef("%s", indent(requestJSON(sc.req), "  "))
	p.steps(o)
	if o.err != nil {
		p.linef("error (after %s):", fmtDur(o.elapsed))
		p.linef("  %s", o.err.Error())
		if o.err.Details != nil {
			p.linef("  details: %s", compact(o.err.Details))
		}
		if len(o.results()) == 0 {
			p.linef("partial results: none")
		} else {
			p.linef("partial results:")
			p.linef("%s", indent(pretty(o.results()), "  "))
		}
		return
	}
	p.linef("results (after %s):", fmtDur(o.elapsed))
	p.linef("%s", indent(pretty(o.results()), "  "))
}

func (p *printer) steps(o *outcome) {
	if len(o.steps) == 0 {
		p.linef("steps: none ran")
		return
	}
	traced := o.resp != nil && len(o.resp.Trace) > 0
	rows := [][]string{{"step", "fun", "node", "start", "took", ""}}
	if traced {
		rows[0] = []string{"step", "fun", "node", "start", "took", "fetched", ""}
	}
	fetched := o.fetched()
	for _, ev := range o.steps {
		nodeID := ev.Node
		if nodeID == "" {
			nodeID = "-"
		}
		status := "ok"
		if ev.Err != nil {
			status = string(ev.Err.Code)
		}
		row := []string{ev.Step, ev.Fun, nodeID, "+" + fmtDur(ev.Start.Sub(o.sent)), fmtDur(ev.Duration), status}
		if traced {
			row = slices.Insert(row, 5, fmtBytes(fetched[ev.Step]))
		}
		rows = append(rows, row)
	}
	p.linef("steps:")
	for _, l := range table(rows) {
		p.linef("  %s", l)
	}
}

// table aligns rows into columns two spaces apart.
func table(rows [][]string) []string {
	var widths []int
	for _, r := range rows {
		for i, c := range r {
			if i >= len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], len(c))
		}
	}
	out := make([]string, len(rows))
	for j, r := range rows {
		var b strings.Builder
		for i, c := range r {
			if i > 0 {
				b.WriteString("  ")
			}
			fmt.Fprintf(&b, "%-*s", widths[i], c)
		}
		out[j] = strings.TrimRight(b.String(), " ")
	}
	return out
}

// fmtBytes writes n bytes in B, kB or MB (powers of ten).
func fmtBytes(n int64) string {
	switch {
	case n < 1000:
		return fmt.Sprintf("%d B", n)
	case n < 1000_000:
		return fmt.Sprintf("%.1f kB", float64(n)/1e3)
	}
	return fmt.Sprintf("%.1f MB", float64(n)/1e6)
}

func fmtDur(d time.Duration) string {
	ms := float64(d) / float64(time.Millisecond)
	switch {
	case ms < 1:
		return fmt.Sprintf("%.2fms", ms)
	case ms < 10:
		return fmt.Sprintf("%.1fms", ms)
	}
	return fmt.Sprintf("%.0fms", ms)
}

// requestJSON renders a request as compact JSON with one command per line.
func requestJSON(r *schema.Request) string {
	var b strings.Builder
	b.WriteString(`{"id":`)
	b.WriteString(compact(r.ID))
	b.WriteString(`,"cmds":[`)
	for i, c := range r.Cmds {
		b.WriteString("\n  ")
		b.WriteString(compact(c))
		if i < len(r.Cmds)-1 {
			b.WriteString(",")
		}
	}
	b.WriteString("\n]")
	if r.TimeoutMS > 0 {
		fmt.Fprintf(&b, `,"timeout_ms":%d`, r.TimeoutMS)
	}
	if r.Results != "" {
		b.WriteString(`,"results":`)
		b.WriteString(compact(r.Results))
	}
	if r.Trace {
		b.WriteString(`,"trace":true`)
	}
	b.WriteString("}")
	return b.String()
}

// compact renders v as one line of JSON, struct fields in their order.
func compact(v any) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return fmt.Sprintf("<%v>", err)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// pretty renders a value of the value model as indented JSON, with the
// codec's JSON (so 3.0 stays a float and 3 an integer).
func pretty(v any) string {
	data, err := codec.JSON.Encode(v)
	if err != nil {
		return fmt.Sprintf("<%v>", err)
	}
	var b bytes.Buffer
	if err := json.Indent(&b, data, "", "  "); err != nil {
		return string(data)
	}
	return b.String()
}

func indent(s, prefix string) string {
	return prefix + strings.ReplaceAll(s, "\n", "\n"+prefix)
}
