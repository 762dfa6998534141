package bench

import (
	"bytes"
	"context"
	"errors"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// The benchmarks share one rig (embedded nats-server, node, raw responder,
// client) of each kind, started by the first benchmark that needs it and
// stopped in TestMain after every test and benchmark has run.
var (
	fixtureMu   sync.Mutex
	fixtureRigs = map[fixtureKey]*rig{}
)

// fixtureKey is a kind of shared rig: whether its nodes' Prometheus
// metrics are on, whether its server runs JetStream, so that its nodes
// pass larger values by reference (Config.Objects), and whether it runs
// the durable scenarios (Config.Durable, with JetStream too).
type fixtureKey struct{ metrics, objects, durable bool }

func fixture(b testing.TB) *rig { return fixtureOf(b, fixtureKey{}) }

// fixtureWith returns the shared rig whose node has its Prometheus metrics
// on or off.
func fixtureWith(b testing.TB, withMetrics bool) *rig {
	return fixtureOf(b, fixtureKey{metrics: withMetrics})
}

// fixtureOf returns the shared rig of kind k.
func fixtureOf(b testing.TB, k fixtureKey) *rig {
	b.Helper()
	fixtureMu.Lock()
	defer fixtureMu.Unlock()
	if r := fixtureRigs[k]; r != nil {
		return r
	}
	cfg := DefaultConfig()
	cfg.Metrics, cfg.Objects, cfg.Durable = k.metrics, k.objects, k.durable
	cfg.ObjectBytes = 1 << 20
	cfg, err := cfg.withDefaults()
	if err == nil {
		var r *rig
		if r, err = newRig(context.Background(), cfg); err == nil {
			fixtureRigs[k] = r
			return r
		}
	}
	b.Fatalf("bench fixture: %v", err)
	return nil
}

// withTeardown stops the shared rig after the tests and benchmarks, before
// goleak looks for leaked goroutines.
type withTeardown struct{ m *testing.M }

func (w withTeardown) Run() int {
	code := w.m.Run()
	for _, r := range fixtureRigs {
		r.close()
	}
	return code
}

// rssChildEnv names the node a TestLoadObjectRSS node process is.
const rssChildEnv = "MPREG_BENCH_RSS_NODE"

// rssChild, when set (objrss_norace_test.go), runs this binary as a node
// process of TestLoadObjectRSS if the environment asks it to.
var rssChild func() int

func TestMain(m *testing.M) {
	if rssChild != nil && os.Getenv(rssChildEnv) != "" {
		os.Exit(rssChild())
	}
	goleak.VerifyTestMain(withTeardown{m})
}

// benchSequential runs one scenario back to back on one goroutine and
// reports the p50 and p99 of the calls next to ns/op, and the CPU time the
// whole process (server, node and clients) spent per call.
func benchSequential(b *testing.B, name string) { benchSequentialOn(b, fixture(b), name) }

func benchSequentialOn(b *testing.B, r *rig, name string) {
	f := r.ops()[name]
	ctx := context.Background()
	lat := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0, cpuOK := processCPU()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if err := f(ctx); err != nil {
			b.Fatalf("%s: %v", name, err)
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	reportCPU(b, cpu0, cpuOK)
	slices.Sort(lat)
	b.ReportMetric(float64(percentile(lat, 0.50).Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(percentile(lat, 0.99).Nanoseconds()), "p99-ns")
}

// benchParallel runs one scenario from 64 goroutines (as Run's default
// throughput phase) sharing the rig's connections, and reports the process
// CPU time per call.
func benchParallel(b *testing.B, name string) { benchParallelOn(b, fixture(b), name) }

func benchParallelOn(b *testing.B, r *rig, name string) {
	f := r.ops()[name]
	ctx := context.Background()
	b.SetParallelism(max(1, DefaultConfig().Concurrency/runtime.GOMAXPROCS(0)))
	b.ReportAllocs()
	b.ResetTimer()
	cpu0, cpuOK := processCPU()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := f(ctx); err != nil {
				b.Errorf("%s: %v", name, err)
				return
			}
		}
	})
	b.StopTimer()
	reportCPU(b, cpu0, cpuOK)
}

// reportCPU reports the process CPU time per call since cpu0. It is less
// disturbed than ns/op by other programs on a busy machine.
func reportCPU(b *testing.B, cpu0 time.Duration, ok bool) {
	cpu1, ok1 := processCPU()
	if ok && ok1 && b.N > 0 {
		b.ReportMetric(float64((cpu1-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
	}
}

// BenchmarkSequential runs every scenario of `mpreg bench` (see Scenarios)
// back to back on one goroutine, each beside the raw NATS ones of the same
// run: read raw-nats (the responder on an in-process connection, as the
// nodes A and B are) and raw-nats-tcp (for rpc-json-tcp) as the baselines.
func BenchmarkSequential(b *testing.B) {
	for _, name := range Scenarios {
		b.Run(name, func(b *testing.B) { benchSequential(b, name) })
	}
}

// parallelScenarios are the scenarios BenchmarkParallel runs.
var parallelScenarios = []string{ScenarioRaw, ScenarioRawTCP, ScenarioRPCJSON, ScenarioRPCJSONTCP, ScenarioClientCall, ScenarioRPCRun}

// BenchmarkParallel runs the single-step scenarios from 64 goroutines (as
// Run's default throughput phase) sharing the rig's connections.
func BenchmarkParallel(b *testing.B) {
	for _, name := range parallelScenarios {
		b.Run(name, func(b *testing.B) { benchParallel(b, name) })
	}
}

// ownBatch is how many calls of one scenario BenchmarkOwnCPU makes between
// two readings of the process CPU time.
const ownBatch = 200

// BenchmarkOwnCPU measures the CPU MPREG's own code spends per one-step
// echo: the process CPU time per call of a scenario minus that of raw-nats,
// measured in alternating batches of ownBatch calls in the same run (the
// median of the batches' differences, which a busy machine disturbs less
// than their sum), and likewise the heap objects allocated per call
// (own-allocs/op, runtime.MemStats.Mallocs). Both send the same NATS messages (a request from a TCP
// requester to a responder on an in-process connection and its reply), so
// the difference is what MPREG adds: on the node (decode, plan, run,
// encode) and, for the Go client scenarios, in the client.
func BenchmarkOwnCPU(b *testing.B) {
	for _, name := range []string{ScenarioRPCJSON, ScenarioClientCall, ScenarioRPCRun} {
		b.Run(name, func(b *testing.B) {
			r := fixture(b)
			ops := r.ops()
			raw, f := ops[ScenarioRaw], ops[name]
			ctx := context.Background()
			batch := func(f op, n int) (cpu, allocs float64) {
				c0, _ := processCPU()
				m0 := mallocs()
				for range n {
					if err := f(ctx); err != nil {
						b.Fatalf("%s: %v", name, err)
					}
				}
				m1 := mallocs()
				c1, _ := processCPU()
				return float64((c1 - c0).Nanoseconds()) / float64(n), float64(m1-m0) / float64(n)
			}
			if _, ok := processCPU(); !ok {
				b.Skip("no process CPU time on this platform")
			}
			var rawPer, perOp, own, ownAllocs []float64
			b.ReportAllocs()
			b.ResetTimer()
			for done := 0; done < b.N; {
				n := min(ownBatch, b.N-done)
				r, ra := batch(raw, n)
				o, oa := batch(f, n)
				rawPer, perOp, own = append(rawPer, r), append(perOp, o), append(own, o-r)
				ownAllocs = append(ownAllocs, oa-ra)
				done += n
			}
			b.StopTimer()
			b.ReportMetric(median(perOp), "cpu-ns/op")
			b.ReportMetric(median(rawPer), "raw-cpu-ns/op")
			b.ReportMetric(median(own), "own-cpu-ns/op")
			b.ReportMetric(median(ownAllocs), "own-allocs/op")
		})
	}
}

// mallocs is how many heap objects the whole process (server, node and
// clients) has allocated so far.
func mallocs() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.Mallocs
}

func median(l []float64) float64 {
	slices.Sort(l)
	return l[len(l)/2]
}

func TestRunSmoke(t *testing.T) {
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := Run(ctx, Config{Duration: 200 * time.Millisecond, Concurrency: 4}, &out); err != nil {
		t.Fatalf("Run: %v\n%s", err, out.String())
	}
	t.Log("\n" + out.String())

	rows := map[string][]string{}
	for _, line := range strings.Split(out.String(), "\n") {
		f := strings.Fields(line)
		if len(f) == 7 && slices.Contains(Scenarios, f[0]) {
			rows[f[0]] = f[1:]
		}
	}
	for _, name := range Scenarios {
		cells, ok := rows[name]
		if !ok {
			t.Errorf("no row for %s", name)
			continue
		}
		for i, c := range cells[:3] {
			d, err := time.ParseDuration(c)
			if err != nil || d <= 0 {
				t.Errorf("%s: latency column %d is %q, want a positive duration", name, i, c)
			}
		}
		for i, c := range cells[3:] {
			v, err := strconv.ParseFloat(strings.TrimSuffix(c, "x"), 64)
			if err != nil || v <= 0 {
				t.Errorf("%s: column %d is %q, want a positive number", name, i+3, c)
			}
		}
	}
	if n := strings.Count(out.String(), "PASS ") + strings.Count(out.String(), "MISS "); n != len(targets) {
		t.Errorf("%d target verdicts, want %d", n, len(targets))
	}
}

func TestConfigDefaults(t *testing.T) {
	in := Config{Servers: []string{"nats://127.0.0.1:4222"}}
	got, err := in.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if got.Duration != 3*time.Second || got.Concurrency != 64 || got.PayloadBytes != 16 || got.Cluster != "bench" {
		t.Errorf("defaults: %+v", got)
	}
	got.Servers[0] = "changed"
	if in.Servers[0] != "nats://127.0.0.1:4222" {
		t.Error("withDefaults shares the caller's Servers")
	}
	if got.ObjectBytes != 100<<20 || got.ObjectRounds != 5 || got.Objects {
		t.Errorf("object defaults: %+v", got)
	}
	for _, bad := range []Config{{Duration: -1}, {Concurrency: -1}, {PayloadBytes: -1}, {Cluster: "a.b"}, {ObjectBytes: -1}, {ObjectRounds: -1}, {Objects: true, ObjectBytes: 256 << 10}} {
		if _, err := bad.withDefaults(); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%+v: err %v, want ErrInvalidConfig", bad, err)
		}
	}
	if err := Run(context.Background(), Config{Concurrency: -1}, &bytes.Buffer{}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("Run with a bad config: %v", err)
	}
}

// BenchmarkMetrics runs client-call and rpc-json with the nodes'
// Prometheus metrics on (as with --metrics-listen), to be read beside
// BenchmarkSequential's.
func BenchmarkMetrics(b *testing.B) {
	for _, name := range []string{ScenarioClientCall, ScenarioRPCJSON} {
		b.Run(name, func(b *testing.B) { benchSequentialOn(b, fixtureWith(b, true), name) })
	}
	b.Run(ScenarioClientCall+"-parallel", func(b *testing.B) {
		benchParallelOn(b, fixtureWith(b, true), ScenarioClientCall)
	})
}

// TestChainAltRemoteSteps checks ChainAltRemoteSteps, which the remote
// step target divides by, against the nodes' counters: one chain-10-ab
// call is planned on A, runs ChainAltRemoteSteps steps on B, and sends B
// no request to plan (no delegation).
func TestChainAltRemoteSteps(t *testing.T) {
	r := fixture(t)
	f := r.ops()[ScenarioChainAlt]
	a, b := r.nodes[0], r.nodes[1]
	// Quiet nodes: nothing else runs on the shared rig during a test.
	for range 3 {
		a0, b0 := a.Stats(), b.Stats()
		if err := f(context.Background()); err != nil {
			t.Fatal(err)
		}
		a1, b1 := a.Stats(), b.Stats()
		if d := a1.Requests - a0.Requests; d != 1 {
			t.Errorf("A planned %d requests, want 1", d)
		}
		if d := b1.Requests - b0.Requests; d != 0 {
			t.Errorf("B planned %d requests, want 0 (a delegated run)", d)
		}
		if d := b1.Steps - b0.Steps; d != ChainAltRemoteSteps {
			t.Errorf("B ran %d steps, want %d", d, ChainAltRemoteSteps)
		}
		if d := a1.Steps - a0.Steps; d != 10-ChainAltRemoteSteps {
			t.Errorf("A ran %d steps, want %d", d, 10-ChainAltRemoteSteps)
		}
	}
}

// TestRawAB checks that raw-a-b goes between node A's and node B's own
// connections.
func TestRawAB(t *testing.T) {
	r := fixture(t)
	if err := r.ops()[ScenarioRawAB](context.Background()); err != nil {
		t.Fatal(err)
	}
	a0 := r.nodeNCs[0].Stats()
	b0 := r.nodeNCs[1].Stats()
	if err := r.ops()[ScenarioRawAB](context.Background()); err != nil {
		t.Fatal(err)
	}
	a1, b1 := r.nodeNCs[0].Stats(), r.nodeNCs[1].Stats()
	if a1.OutMsgs-a0.OutMsgs < 1 || a1.InMsgs-a0.InMsgs < 1 || b1.InMsgs-b0.InMsgs < 1 || b1.OutMsgs-b0.OutMsgs < 1 {
		t.Errorf("A sent %d, got %d; B got %d, sent %d messages; want a request and a reply each",
			a1.OutMsgs-a0.OutMsgs, a1.InMsgs-a0.InMsgs, b1.InMsgs-b0.InMsgs, b1.OutMsgs-b0.OutMsgs)
	}
}

// TestReportRemoteStep checks the remote step target's arithmetic and
// verdict in the report.
func TestReportRemoteStep(t *testing.T) {
	res := []result{
		{name: ScenarioChain10, p50: 100 * time.Microsecond},
		{name: ScenarioChainAlt, p50: 300 * time.Microsecond},
		{name: ScenarioRawAB, p50: 20 * time.Microsecond},
	}
	for _, c := range []struct {
		ab      time.Duration
		verdict string
		ratio   string
	}{
		{300 * time.Microsecond, "MISS", "2.00x"}, // (300-100)/5 = 40 vs 20
		{200 * time.Microsecond, "PASS", "1.00x"}, // (200-100)/5 = 20 vs 20
	} {
		res[1].p50 = c.ab
		var out bytes.Buffer
		if err := report(&out, res, targets); err != nil {
			t.Fatal(err)
		}
		var line string
		for _, l := range strings.Split(out.String(), "\n") {
			if strings.Contains(l, "chain-10-ab per remote step / raw a-b round trip") {
				line = l
			}
		}
		step := fmtDur((c.ab - 100*time.Microsecond) / ChainAltRemoteSteps)
		for _, want := range []string{c.verdict, c.ratio, "target 1.20x", "/ " + strconv.Itoa(ChainAltRemoteSteps) + " = " + step + " vs 20.0µs"} {
			if !strings.Contains(line, want) {
				t.Errorf("remote step target %q lacks %q\n%s", line, want, out.String())
			}
		}
	}
}

// BenchmarkRemoteStep runs chain-10, chain-10-ab and raw-a-b in
// alternating batches and reports what a remote step of chain-10-ab costs
// beyond a local one, (p50 of chain-10-ab − p50 of chain-10) /
// ChainAltRemoteSteps, beside the raw round trip between the same two
// connections (raw-a-b's p50) and their ratio, the target of `mpreg bench`.
func BenchmarkRemoteStep(b *testing.B) {
	r := fixture(b)
	ops := r.ops()
	names := []string{ScenarioChain10, ScenarioChainAlt, ScenarioRawAB}
	lat := map[string][]time.Duration{}
	ctx := context.Background()
	b.ResetTimer()
	for done := 0; done < b.N; {
		n := min(ownBatch, b.N-done)
		for _, name := range names {
			for range n {
				t0 := time.Now()
				if err := ops[name](ctx); err != nil {
					b.Fatalf("%s: %v", name, err)
				}
				lat[name] = append(lat[name], time.Since(t0))
			}
		}
		done += n
	}
	b.StopTimer()
	p50 := map[string]time.Duration{}
	for _, name := range names {
		slices.Sort(lat[name])
		p50[name] = percentile(lat[name], 0.5)
	}
	step := (p50[ScenarioChainAlt] - p50[ScenarioChain10]) / ChainAltRemoteSteps
	b.ReportMetric(float64(p50[ScenarioChain10].Nanoseconds()), "chain-10-p50-ns")
	b.ReportMetric(float64(p50[ScenarioChainAlt].Nanoseconds()), "chain-10-ab-p50-ns")
	b.ReportMetric(float64(step.Nanoseconds()), "remote-step-ns")
	b.ReportMetric(float64(p50[ScenarioRawAB].Nanoseconds()), "raw-a-b-p50-ns")
	b.ReportMetric(ratio(float64(step), float64(p50[ScenarioRawAB])), "step/raw")
}
