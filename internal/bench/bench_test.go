package bench

import (
	"bytes"
	"context"
	"errors"
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
// client), started by the first benchmark that needs it and stopped in
// TestMain after every test and benchmark has run.
var (
	fixtureMu   sync.Mutex
	fixtureRigs = map[bool]*rig{} // by whether the node's metrics are on
)

func fixture(b *testing.B) *rig { return fixtureWith(b, false) }

// fixtureWith returns the shared rig whose node has its Prometheus metrics
// on or off.
func fixtureWith(b *testing.B, withMetrics bool) *rig {
	b.Helper()
	fixtureMu.Lock()
	defer fixtureMu.Unlock()
	if r := fixtureRigs[withMetrics]; r != nil {
		return r
	}
	cfg := DefaultConfig()
	cfg.Metrics = withMetrics
	cfg, err := cfg.withDefaults()
	if err == nil {
		var r *rig
		if r, err = newRig(context.Background(), cfg); err == nil {
			fixtureRigs[withMetrics] = r
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

func TestMain(m *testing.M) {
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

// BenchmarkRawNATSRequest is the baseline: nc.Request to a plain NATS echo
// responder on another connection.
func BenchmarkRawNATSRequest(b *testing.B) { benchSequential(b, ScenarioRaw) }

// BenchmarkRawNATSRequestHeader is BenchmarkRawNATSRequest with the
// Content-Type header on the request and the reply, as every MPREG message
// has: the share of a call's cost that docs/PROTOCOL.md §3 puts on NATS itself.
func BenchmarkRawNATSRequestHeader(b *testing.B) { benchSequential(b, ScenarioRawHeader) }

// BenchmarkClientCall is client.Call of echo, sent straight to the node's
// exec subject in MessagePack.
func BenchmarkClientCall(b *testing.B) { benchSequential(b, ScenarioClientCall) }

// BenchmarkRPCSubject is a one-command JSON request on the rpc subject,
// sent with nc.RequestMsg as a client in another language would.
func BenchmarkRPCSubject(b *testing.B) { benchSequential(b, ScenarioRPCJSON) }

// BenchmarkRPCClientRun is the same one-command request through client.Run
// (MessagePack).
func BenchmarkRPCClientRun(b *testing.B) { benchSequential(b, ScenarioRPCRun) }

// BenchmarkChain10 is a request of ten echo steps, each on the previous
// one's result.
func BenchmarkChain10(b *testing.B) { benchSequential(b, ScenarioChain10) }

// BenchmarkFanout16 is a request of 16 independent echo steps and one echos
// sink of all of them.
func BenchmarkFanout16(b *testing.B) { benchSequential(b, ScenarioFanout16) }

// BenchmarkRawNATSRequestParallel is BenchmarkRawNATSRequest from 64
// goroutines on one requester connection.
func BenchmarkRawNATSRequestParallel(b *testing.B) { benchParallel(b, ScenarioRaw) }

// BenchmarkClientCallParallel is BenchmarkClientCall from 64 goroutines on
// one client.
func BenchmarkClientCallParallel(b *testing.B) { benchParallel(b, ScenarioClientCall) }

// BenchmarkRawNATSRequestHeaderParallel is BenchmarkRawNATSRequestHeader
// from 64 goroutines on one requester connection.
func BenchmarkRawNATSRequestHeaderParallel(b *testing.B) { benchParallel(b, ScenarioRawHeader) }

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
	if n := strings.Count(out.String(), "PASS ") + strings.Count(out.String(), "MISS "); n != 3 {
		t.Errorf("%d target verdicts, want 3", n)
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
	for _, bad := range []Config{{Duration: -1}, {Concurrency: -1}, {PayloadBytes: -1}, {Cluster: "a.b"}} {
		if _, err := bad.withDefaults(); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%+v: err %v, want ErrInvalidConfig", bad, err)
		}
	}
	if err := Run(context.Background(), Config{Concurrency: -1}, &bytes.Buffer{}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("Run with a bad config: %v", err)
	}
}

// BenchmarkClientCallMetrics is BenchmarkClientCall with the node's
// Prometheus metrics on (as with --metrics-listen).
func BenchmarkClientCallMetrics(b *testing.B) {
	benchSequentialOn(b, fixtureWith(b, true), ScenarioClientCall)
}

// BenchmarkRPCSubjectMetrics is BenchmarkRPCSubject with metrics on.
func BenchmarkRPCSubjectMetrics(b *testing.B) {
	benchSequentialOn(b, fixtureWith(b, true), ScenarioRPCJSON)
}

// BenchmarkClientCallParallelMetrics is BenchmarkClientCallParallel with
// metrics on.
func BenchmarkClientCallParallelMetrics(b *testing.B) {
	benchParallelOn(b, fixtureWith(b, true), ScenarioClientCall)
}
