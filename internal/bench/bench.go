// Package bench measures MPREG against raw NATS request/reply in one
// process, on loopback: latency percentiles of sequential calls and
// throughput with many concurrent requesters, for the same payload. Run is
// the engine of `mpreg bench`; bench_test.go holds the same scenarios as Go
// benchmarks, each next to the raw NATS one.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/mpreg/mpreg/bus"
	"github.com/mpreg/mpreg/node"
	"github.com/mpreg/mpreg/schema"
)

// ErrInvalidConfig wraps every configuration error.
var ErrInvalidConfig = errors.New("bench: invalid config")

// Config configures Run. Zero fields take the defaults in DefaultConfig.
type Config struct {
	// Duration is how long each phase (latency, then throughput) of each
	// scenario runs in total, in turns with the other scenarios. Default
	// 3 s.
	Duration time.Duration
	// Concurrency is the number of requesters in the throughput phase.
	// Default 64.
	Concurrency int
	// PayloadBytes is the length of the echoed string. Default 16.
	PayloadBytes int
	// Servers are the NATS URLs to use; empty starts an embedded
	// nats-server on 127.0.0.1 with a random port.
	Servers []string
	// Auth is the identity and TLS settings for Servers.
	Auth bus.Auth
	// InboxPrefix is the prefix of the reply subjects of every connection
	// to Servers (bus.ConnConfig.InboxPrefix). Default "_INBOX".
	InboxPrefix string
	// Metrics turns on the node's Prometheus metrics (as --metrics-listen
	// does), to measure what they cost.
	Metrics bool
	// Cluster is the MPREG cluster id the benchmark node joins. Default
	// "bench".
	Cluster string
	// Objects adds the values-by-reference phase (see runObjects): a value
	// of ObjectBytes made on node A and taken by a step on node B, against
	// a raw JetStream object put and get of the same bytes. It needs
	// JetStream: the embedded server then runs it, storing in a temporary
	// directory it removes.
	Objects bool
	// ObjectBytes is the size of the value of the objects phase. Default
	// 100 MiB.
	ObjectBytes int
	// ObjectRounds is how many transfers of each kind the objects phase
	// measures, alternating, after one of each to warm up. Default 5.
	ObjectRounds int
	// Durable adds the durable scenarios (DurableScenarios): a one-step
	// request and a 10-step chain with "durable": true, each with an id
	// of its own, taking turns with the others, and their targets against
	// the same requests without durability. It needs JetStream: the
	// embedded server then runs it, storing in a temporary directory it
	// removes.
	Durable bool
	// JS adds the TypeScript phase (runJS): the directory of the mpreg
	// npm package (sdk/js), built, whose bench scripts measure its caller
	// and its node against nats.js raw request/reply, in Node.js, on this
	// run's NATS servers. It needs `node`; the scripts get no credentials.
	JS string
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		Duration:     3 * time.Second,
		Concurrency:  64,
		PayloadBytes: 16,
		Cluster:      "bench",
		ObjectBytes:  100 << 20,
		ObjectRounds: 5,
	}
}

// withDefaults fills zero fields and checks the rest; it never writes into
// the caller's Config.
func (c Config) withDefaults() (Config, error) {
	d := DefaultConfig()
	if c.Duration == 0 {
		c.Duration = d.Duration
	}
	if c.Concurrency == 0 {
		c.Concurrency = d.Concurrency
	}
	if c.PayloadBytes == 0 {
		c.PayloadBytes = d.PayloadBytes
	}
	if c.Cluster == "" {
		c.Cluster = d.Cluster
	}
	if c.ObjectBytes == 0 {
		c.ObjectBytes = d.ObjectBytes
	}
	if c.ObjectRounds == 0 {
		c.ObjectRounds = d.ObjectRounds
	}
	switch {
	case c.Duration < 0:
		return c, fmt.Errorf("%w: negative duration %s", ErrInvalidConfig, c.Duration)
	case c.Concurrency < 0:
		return c, fmt.Errorf("%w: negative concurrency %d", ErrInvalidConfig, c.Concurrency)
	case c.PayloadBytes < 0:
		return c, fmt.Errorf("%w: negative payload size %d", ErrInvalidConfig, c.PayloadBytes)
	case c.ObjectBytes < 0:
		return c, fmt.Errorf("%w: negative object size %d", ErrInvalidConfig, c.ObjectBytes)
	case c.ObjectRounds < 0:
		return c, fmt.Errorf("%w: negative object rounds %d", ErrInvalidConfig, c.ObjectRounds)
	case c.Objects && c.ObjectBytes <= node.DefaultInlineMax:
		return c, fmt.Errorf("%w: an object of %d bytes would travel inline: give more than the inline limit, %d", ErrInvalidConfig, c.ObjectBytes, node.DefaultInlineMax)
	}
	if err := schema.CheckID(c.Cluster); err != nil {
		return c, fmt.Errorf("%w: cluster: %w", ErrInvalidConfig, err)
	}
	c.Servers = slices.Clone(c.Servers)
	return c, nil
}

// target is one figure MPREG is held to: a ratio of a scenario's p50 or
// req/s to another scenario's in the same run. With minus, the numerator
// is (num p50 − minus p50) / per: what each of per steps of num costs
// beyond the same step in minus. With over (the durable targets), the
// figure is a time instead: num's p50 beyond den's, at most over; with
// base too, less base[0]'s p50 beyond base[1]'s, shared by per steps.
// With rps and minRPS, the figure is num's req/s, at least minRPS.
type target struct {
	what     string
	num, den string  // scenarios
	rps      bool    // req/s (at least limit) rather than p50 (at most limit)
	limit    float64 // the ratio to meet
	minus    string  // a scenario whose p50 is taken off num's
	per      int     // the steps the difference is shared by
	over     time.Duration
	base     [2]string
	minRPS   float64
}

// Targets are the figures MPREG is held to, as ratios in one run.
var targets = []target{
	{what: "rpc-json p50 / raw-nats p50", num: ScenarioRPCJSON, den: ScenarioRaw, limit: 1.25},
	{what: "rpc-json req/s / raw-nats req/s", num: ScenarioRPCJSON, den: ScenarioRaw, rps: true, limit: 0.7},
	{what: "rpc-json-tcp p50 / raw-nats-tcp p50", num: ScenarioRPCJSONTCP, den: ScenarioRawTCP, limit: 1.15},
	{what: "rpc-json-tcp req/s / raw-nats-tcp req/s", num: ScenarioRPCJSONTCP, den: ScenarioRawTCP, rps: true, limit: 0.75},
	{what: "client-call p50 / raw-nats p50", num: ScenarioClientCall, den: ScenarioRaw, limit: 1.15},
	{what: "client-run p50 / raw-nats p50", num: ScenarioRPCRun, den: ScenarioRaw, limit: 1.3},
	{what: "chain-10-ab p50 / client-run p50", num: ScenarioChainAlt, den: ScenarioRPCRun, limit: 4},
	// chain-10-ab and chain-10 differ only in where five of the steps run:
	// the difference per remote step is what crossing to B adds, against
	// a raw round trip between A's and B's own connections.
	{what: "chain-10-ab per remote step / raw a-b round trip", num: ScenarioChainAlt, minus: ScenarioChain10,
		per: ChainAltRemoteSteps, den: ScenarioRawAB, limit: 1.2},
	{what: "chain-10-b p50 / client-run p50", num: ScenarioChainAway, den: ScenarioRPCRun, limit: 2},
	{what: "chain-10-via-a p50 / rpc-json p50", num: ScenarioChainVia, den: ScenarioRPCJSON, limit: 2},
	{what: "routed-run p50 / client-run p50", num: ScenarioRouted, den: ScenarioRPCRun, limit: 1.1},
}

// result is what one scenario measured.
type result struct {
	name          string
	p50, p90, p99 time.Duration // latency phase
	rps           float64       // throughput phase
}

// Run starts a nats-server (unless cfg.Servers are given), one MPREG node,
// a raw NATS echo responder and a client, each on its own connection, then
// measures every scenario's latency (one requester) and throughput
// (cfg.Concurrency requesters), each for cfg.Duration in turns with the
// other scenarios, and writes a table and the targets check to w. Everything it started is stopped before it returns. A failed call
// aborts the run with an error; missed targets do not.
func Run(ctx context.Context, cfg Config, w io.Writer) error {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return err
	}
	r, err := newRig(ctx, cfg)
	if err != nil {
		return err
	}
	defer r.close()

	server := "embedded nats-server " + r.reqConn.ConnectedServerVersion()
	if r.srv == nil {
		server = "nats-server " + r.reqConn.ConnectedServerVersion()
	}
	fmt.Fprintf(w, "mpreg bench: %s at %s, cluster %q, metrics %v\n", server, bus.Redact(r.reqConn.ConnectedUrl()), cfg.Cluster, cfg.Metrics)
	fmt.Fprintf(w, "%s %s/%s, GOMAXPROCS %d, %d CPUs; payload %d B; %s per phase; %d requesters for req/s\n\n",
		runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.GOMAXPROCS(0), runtime.NumCPU(),
		cfg.PayloadBytes, cfg.Duration, cfg.Concurrency)

	names, tgts := Scenarios, targets
	if cfg.Durable {
		names = append(slices.Clone(Scenarios), DurableScenarios...)
		tgts = append(slices.Clone(targets), durableTargets(cfg.Concurrency)...)
	}
	results, err := measureAll(ctx, r.ops(), names, cfg)
	if err != nil {
		return err
	}
	if err = report(w, results, tgts); err != nil {
		return err
	}
	if cfg.Objects {
		if err := r.runObjects(ctx, w); err != nil {
			return err
		}
	}
	if cfg.JS != "" {
		return runJS(ctx, w, cfg, r.reqConn.ConnectedUrl())
	}
	return nil
}

// rounds is how many slices each phase is cut into. The scenarios take
// turns slice by slice, so that a change in background load during the run
// weighs on every scenario alike instead of on whichever ran at that time.
const rounds = 3

// measureAll warms every scenario of names up, then runs the latency phase
// and the throughput phase, each in rounds with the scenarios taking turns.
func measureAll(ctx context.Context, ops map[string]op, names []string, cfg Config) ([]result, error) {
	n := rounds
	if cfg.Duration < 300*time.Millisecond {
		n = 1
	}
	slice := cfg.Duration / time.Duration(n)
	warm := min(cfg.Duration/10, 250*time.Millisecond)
	lat := make(map[string][]time.Duration, len(names))
	for _, name := range names {
		if _, err := sequential(ctx, ops[name], warm, nil); err != nil {
			return nil, fmt.Errorf("bench: %s: warm-up: %w", name, err)
		}
		lat[name] = make([]time.Duration, 0, 1<<16)
	}
	for range n {
		for _, name := range names {
			runtime.GC()
			var err error
			if lat[name], err = sequential(ctx, ops[name], slice, lat[name]); err != nil {
				return nil, fmt.Errorf("bench: %s: latency: %w", name, err)
			}
		}
	}
	calls := make(map[string]int64, len(names))
	spent := make(map[string]time.Duration, len(names))
	for range n {
		for _, name := range names {
			runtime.GC()
			c, d, err := throughput(ctx, ops[name], slice, cfg.Concurrency)
			if err != nil {
				return nil, fmt.Errorf("bench: %s: throughput: %w", name, err)
			}
			calls[name] += c
			spent[name] += d
		}
	}
	out := make([]result, 0, len(names))
	for _, name := range names {
		l := lat[name]
		slices.Sort(l)
		out = append(out, result{
			name: name,
			p50:  percentile(l, 0.50), p90: percentile(l, 0.90), p99: percentile(l, 0.99),
			rps: float64(calls[name]) / spent[name].Seconds(),
		})
	}
	return out, nil
}

// sequential calls f back to back for d (and at least once). With a
// non-nil lat it appends each call's latency to lat and returns it.
func sequential(ctx context.Context, f op, d time.Duration, lat []time.Duration) ([]time.Duration, error) {
	start := time.Now()
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		t0 := time.Now()
		if err := f(ctx); err != nil {
			return nil, err
		}
		end := time.Now()
		if lat != nil {
			lat = append(lat, end.Sub(t0))
		}
		if end.Sub(start) >= d {
			return lat, nil
		}
	}
}

// throughput runs n requesters calling f back to back for d and returns the
// calls completed and the time they took. The first error stops every
// requester.
func throughput(ctx context.Context, f op, d time.Duration, n int) (int64, time.Duration, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		total atomic.Int64
		wg    sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(d)
	done := ctx.Done()
	for range n {
		wg.Go(func() {
			var count int64
			defer func() { total.Add(count) }()
			for {
				select {
				case <-done:
					return
				default:
				}
				if err := f(ctx); err != nil {
					if ctx.Err() == nil {
						cancel(err)
					}
					return
				}
				count++
				if !time.Now().Before(deadline) {
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := context.Cause(ctx); err != nil {
		return 0, 0, err
	}
	return total.Load(), elapsed, nil
}

// percentile returns the q-quantile (nearest rank) of sorted latencies.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// fmtDur prints a latency in µs below a millisecond, else in ms, in a form
// time.ParseDuration reads back.
func fmtDur(d time.Duration) string {
	if d < time.Millisecond {
		return fmt.Sprintf("%.1fµs", float64(d)/float64(time.Microsecond))
	}
	return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// report writes the table and the check of tgts.
func report(w io.Writer, results []result, tgts []target) error {
	byName := map[string]result{}
	for _, r := range results {
		byName[r.name] = r
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tp50\tp90\tp99\treq/s\tp50 vs raw\treq/s vs raw\t")
	for _, r := range results {
		// Each against its own baseline: the node on TCP against the
		// responder on TCP, the rest against the in-process responder.
		raw := byName[ScenarioRaw]
		if r.name == ScenarioRawTCP || r.name == ScenarioRPCJSONTCP {
			raw = byName[ScenarioRawTCP]
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.0f\t%.2fx\t%.2fx\t\n", r.name,
			fmtDur(r.p50), fmtDur(r.p90), fmtDur(r.p99), r.rps,
			ratio(float64(r.p50), float64(raw.p50)), ratio(r.rps, raw.rps))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("bench: write: %w", err)
	}
	var b strings.Builder
	b.WriteString("\ntargets (ratios in this run):\n")
	for _, t := range tgts {
		verdict := "MISS"
		if t.over > 0 || t.minRPS > 0 {
			fig, want, ok, detail := t.checkAbs(byName)
			if ok {
				verdict = "PASS"
			}
			fmt.Fprintf(&b, "  %-4s  %-48s %6s (target %s; %s)\n", verdict, t.what, fig, want, detail)
			continue
		}
		got, ok, detail := t.check(byName)
		if ok {
			verdict = "PASS"
		}
		fmt.Fprintf(&b, "  %-4s  %-48s %5.2fx (target %.2fx; %s)\n", verdict, t.what, got, t.limit, detail)
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("bench: write: %w", err)
	}
	return nil
}

// check returns t's ratio in results, whether it meets t's limit, and the
// figures it comes from.
func (t target) check(results map[string]result) (got float64, ok bool, detail string) {
	num, den := results[t.num], results[t.den]
	switch {
	case t.rps:
		got = ratio(num.rps, den.rps)
		return got, got >= t.limit, fmt.Sprintf("%.0f vs %.0f req/s", num.rps, den.rps)
	case t.minus != "":
		minus := results[t.minus]
		step := (num.p50 - minus.p50) / time.Duration(max(t.per, 1))
		got = ratio(float64(step), float64(den.p50))
		return got, got <= t.limit, fmt.Sprintf("(%s - %s) / %d = %s vs %s",
			fmtDur(num.p50), fmtDur(minus.p50), t.per, fmtDur(step), fmtDur(den.p50))
	default:
		got = ratio(float64(num.p50), float64(den.p50))
		return got, got <= t.limit, fmtDur(num.p50) + " vs " + fmtDur(den.p50)
	}
}

// checkAbs returns the figure of t, an absolute target (over or minRPS),
// in results, its limit, whether the figure meets it, and what it comes
// from.
func (t target) checkAbs(results map[string]result) (fig, want string, ok bool, detail string) {
	num, den := results[t.num], results[t.den]
	if t.minRPS > 0 {
		return fmt.Sprintf("%.0f/s", num.rps), fmt.Sprintf("at least %.0f/s", t.minRPS), num.rps >= t.minRPS,
			fmt.Sprintf("%.0f vs %s %.0f req/s", num.rps, ScenarioRaw, results[ScenarioRaw].rps)
	}
	d := num.p50 - den.p50
	detail = fmtDur(num.p50) + " - " + fmtDur(den.p50)
	if t.base[0] != "" {
		b := results[t.base[0]].p50 - results[t.base[1]].p50
		detail = fmt.Sprintf("(%s - %s) / %d", fmtDur(d), fmtDur(b), max(t.per, 1))
		d = (d - b) / time.Duration(max(t.per, 1))
	}
	return fmtDur(d), "at most " + fmtDur(t.over), d <= t.over, detail
}
