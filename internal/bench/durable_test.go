package bench

import (
	"bytes"
	"context"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mpreg/mpreg/node"
)

// TestRunDurableSmoke runs `mpreg bench --durable` briefly: the durable
// scenarios have rows beside the others, each call answered with the
// payload under its own id, and the four durable targets are checked
// beside the others.
func TestRunDurableSmoke(t *testing.T) {
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := Run(ctx, Config{Duration: 50 * time.Millisecond, Concurrency: 4, Durable: true}, &out); err != nil {
		t.Fatalf("Run: %v\n%s", err, out.String())
	}
	t.Log("\n" + out.String())
	for _, name := range append(slices.Clone(Scenarios), DurableScenarios...) {
		row := regexp.MustCompile(`(?m)^\s*` + regexp.QuoteMeta(name) + `(\s+[0-9.]+(µs|ms)){3}\s+[1-9][0-9]*\s+[0-9.]+x\s+[0-9.]+x$`)
		if !row.MatchString(out.String()) {
			t.Errorf("no row for %s", name)
		}
	}
	for _, line := range []string{
		`durable-1 p50 - client-run p50\s+-?[0-9.]+(µs|ms) \(target at most 1\.00ms; `,
		`durable-chain-10 p50 - chain-10 p50\s+-?[0-9.]+(µs|ms) \(target at most 4\.00ms; `,
		`durable per step: \(chain's - one step's\) / 9\s+-?[0-9.]+(µs|ms) \(target at most 300\.0µs; \(.+\) / 9\)`,
		`durable-1 req/s, 4 requesters\s+[1-9][0-9]*/s \(target at least 2000/s; [0-9]+ vs raw-nats [0-9]+ req/s\)`,
	} {
		if !regexp.MustCompile(`(?m)^\s+(PASS|MISS)\s+` + line).MatchString(out.String()) {
			t.Errorf("no target line matching %q", line)
		}
	}
	if n := strings.Count(out.String(), "PASS ") + strings.Count(out.String(), "MISS "); n != len(targets)+len(durableTargets(4)) {
		t.Errorf("%d target verdicts, want %d", n, len(targets)+len(durableTargets(4)))
	}
}

// TestReportDurable checks the durable targets' arithmetic and verdicts.
func TestReportDurable(t *testing.T) {
	res := []result{
		{name: ScenarioRaw, p50: 40 * time.Microsecond, rps: 40000},
		{name: ScenarioRPCRun, p50: 100 * time.Microsecond},
		{name: ScenarioChain10, p50: 200 * time.Microsecond},
		{name: ScenarioDurable1, p50: 900 * time.Microsecond, rps: 2500},
		{name: ScenarioDurable10, p50: 3800 * time.Microsecond, rps: 300},
	}
	check := func(want ...string) {
		t.Helper()
		var out bytes.Buffer
		if err := report(&out, res, durableTargets(64)); err != nil {
			t.Fatal(err)
		}
		for _, w := range want {
			if !regexp.MustCompile(`(?m)^` + w + `$`).MatchString(out.String()) {
				t.Errorf("no line %q in\n%s", w, out.String())
			}
		}
	}
	// 900-100 = 800µs; 3800-200 = 3.6ms; (3.6ms - 800µs) / 9 = 311.1µs.
	check(`  PASS  durable-1 p50 - client-run p50 +800\.0µs \(target at most 1\.00ms; 900\.0µs - 100\.0µs\)`,
		`  PASS  durable-chain-10 p50 - chain-10 p50 +3\.60ms \(target at most 4\.00ms; 3\.80ms - 200\.0µs\)`,
		`  MISS  durable per step: \(chain's - one step's\) / 9 +311\.1µs \(target at most 300\.0µs; \(3\.60ms - 800\.0µs\) / 9\)`,
		`  PASS  durable-1 req/s, 64 requesters +2500/s \(target at least 2000/s; 2500 vs raw-nats 40000 req/s\)`)
	res[3].p50, res[3].rps = 1200*time.Microsecond, 1999
	// 1.2ms-100µs = 1.1ms; (3.6ms - 1.1ms) / 9 = 277.8µs.
	check(`  MISS  durable-1 p50 - client-run p50 +1\.10ms \(target at most 1\.00ms; 1\.20ms - 100\.0µs\)`,
		`  PASS  durable per step: \(chain's - one step's\) / 9 +277\.8µs \(target at most 300\.0µs; \(3\.60ms - 1\.10ms\) / 9\)`,
		`  MISS  durable-1 req/s, 64 requesters +1999/s \(target at least 2000/s; 1999 vs raw-nats 40000 req/s\)`)
}

// benchAlternating runs plain and durable in alternating batches of
// ownBatch calls, timing only durable's for ns/op, and reports both p50s
// and durable's p99 and overhead at p50 (durable's p50 less plain's), and
// that overhead shared by steps.
func benchAlternating(b *testing.B, plain, durable string, steps int) {
	ops := fixtureOf(b, fixtureKey{durable: true}).ops()
	ctx := context.Background()
	var latPlain, latDur []time.Duration
	batch := func(f op, name string, lat []time.Duration, n int) []time.Duration {
		for range n {
			t0 := time.Now()
			if err := f(ctx); err != nil {
				b.Fatalf("%s: %v", name, err)
			}
			lat = append(lat, time.Since(t0))
		}
		return lat
	}
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; {
		n := min(ownBatch, b.N-done)
		b.StopTimer()
		latPlain = batch(ops[plain], plain, latPlain, n)
		b.StartTimer()
		latDur = batch(ops[durable], durable, latDur, n)
		done += n
	}
	b.StopTimer()
	slices.Sort(latPlain)
	slices.Sort(latDur)
	pp, pd := percentile(latPlain, 0.5), percentile(latDur, 0.5)
	b.ReportMetric(float64(pd.Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(percentile(latDur, 0.99).Nanoseconds()), "p99-ns")
	b.ReportMetric(float64(pp.Nanoseconds()), "plain-p50-ns")
	b.ReportMetric(float64((pd - pp).Nanoseconds()), "overhead-ns")
	if steps > 1 {
		b.ReportMetric(float64((pd-pp).Nanoseconds())/float64(steps), "overhead/step-ns")
	}
}

// BenchmarkDurable measures durable requests on the embedded file store:
// one (durable-1 beside client-run, in alternating batches), chain10
// (durable-chain-10 beside chain-10), each reporting the overhead at p50;
// and parallel64, durable-1 from 64 goroutines, reporting req/s.
func BenchmarkDurable(b *testing.B) {
	b.Run("one", func(b *testing.B) { benchAlternating(b, ScenarioRPCRun, ScenarioDurable1, 1) })
	b.Run("chain10", func(b *testing.B) { benchAlternating(b, ScenarioChain10, ScenarioDurable10, 10) })
	b.Run("parallel64", func(b *testing.B) {
		f := fixtureOf(b, fixtureKey{durable: true}).ops()[ScenarioDurable1]
		ctx := context.Background()
		b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0)))
		b.ReportAllocs()
		b.ResetTimer()
		start := time.Now()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := f(ctx); err != nil {
					b.Errorf("%s: %v", ScenarioDurable1, err)
					return
				}
			}
		})
		b.StopTimer()
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
	})
}

// TestDurableNeedsJetStream: without JetStream the durable scenarios say
// they need it.
func TestDurableNeedsJetStream(t *testing.T) {
	r := fixture(t)
	err := r.waitDurable(context.Background())
	want := "bench: the durable scenarios need JetStream, which node " + r.nodes[0].ID() + " found " + node.JetStreamAbsent.String()
	if err == nil || err.Error() != want {
		t.Errorf("err %v, want %q", err, want)
	}
}
