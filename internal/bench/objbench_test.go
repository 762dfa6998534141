package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/mpreg/mpreg/node"
)

// TestObjectsPhase: the objects phase passes a value from node A to node
// B by reference and puts and gets it raw, and reports both transfers'
// throughput and the bytes each connection moved: the value left A once
// and reached B once, and no other connection of the rig received it.
// The JetStream store it ran in is gone once the rig is closed.
func TestObjectsPhase(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Objects, cfg.ObjectBytes, cfg.ObjectRounds = true, 4<<20, 2
	cfg, err := cfg.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r, err := newRig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	store := r.storeDir
	var out bytes.Buffer
	err = r.runObjects(ctx, &out)
	r.close()
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(store); !os.IsNotExist(err) {
		t.Errorf("the store %s is still there (%v)", store, err)
	}
	for _, name := range []string{ObjScenario, ObjRawScenario} {
		m := regexp.MustCompile(`(?m)^\s*` + name + `\s+([0-9.]+)s\s+([0-9.]+)\s+([0-9.]+)x$`).FindStringSubmatch(out.String())
		if m == nil {
			t.Errorf("no row for %s", name)
			continue
		}
		for _, c := range m[1:] {
			if v, err := strconv.ParseFloat(c, 64); err != nil || v <= 0 {
				t.Errorf("%s: %q, want a positive number", name, c)
			}
		}
	}
	for _, row := range []string{
		ObjScenario + `\s+mpreg-bench-node-a\s+0\.\d\d /\s+4\.0\d`,
		ObjScenario + `\s+mpreg-bench-node-b\s+4\.0\d /\s+0\.\d\d`,
		ObjRawScenario + `\s+mpreg-bench-obj-get\s+4\.0\d /\s+0\.\d\d`,
		ObjRawScenario + `\s+mpreg-bench-obj-put\s+0\.\d\d /\s+4\.0\d`,
		`PASS\s+MiB received by all connections / value\s+1\.0\dx`,
		`(PASS|MISS)\s+mpreg MiB/s / raw put\+get MiB/s\s+[0-9.]+x`,
	} {
		if !regexp.MustCompile(`(?m)^\s*` + row).MatchString(out.String()) {
			t.Errorf("no line matching %q", row)
		}
	}
	if n := regexp.MustCompile(`(?m)^\s*`+ObjScenario+`\s+mpreg-bench`).FindAllStringIndex(out.String(), -1); len(n) != 2 {
		t.Errorf("%d connections moved over 64 KiB in %s, want 2 (A's and B's)", len(n), ObjScenario)
	}
}

// TestObjectsPhaseNeedsJetStream: without JetStream the objects phase
// says it needs it.
func TestObjectsPhaseNeedsJetStream(t *testing.T) {
	r := fixture(t)
	err := r.runObjects(context.Background(), &bytes.Buffer{})
	want := fmt.Sprintf("bench: the objects phase needs JetStream, which node %s found %s", r.nodes[0].ID(), node.JetStreamAbsent)
	if err == nil || err.Error() != want {
		t.Errorf("err %v, want %q", err, want)
	}
}

// BenchmarkObjectsOnOff measures what passing values by reference costs
// small requests: rpc-json and client-call in alternating batches on a rig
// without JetStream and on one whose server runs it, whose nodes have the
// object bucket open. It reports each one's p50 and their ratio.
func BenchmarkObjectsOnOff(b *testing.B) {
	for _, name := range []string{ScenarioRPCJSON, ScenarioClientCall} {
		b.Run(name, func(b *testing.B) {
			off, on := fixture(b).ops()[name], fixtureOf(b, fixtureKey{objects: true}).ops()[name]
			ctx := context.Background()
			var latOff, latOn []time.Duration
			batch := func(f op, lat []time.Duration, n int) []time.Duration {
				for range n {
					t0 := time.Now()
					if err := f(ctx); err != nil {
						b.Fatalf("%s: %v", name, err)
					}
					lat = append(lat, time.Since(t0))
				}
				return lat
			}
			b.ResetTimer()
			for done := 0; done < b.N; {
				n := min(ownBatch, b.N-done)
				latOff = batch(off, latOff, n)
				latOn = batch(on, latOn, n)
				done += n
			}
			b.StopTimer()
			p := func(l []time.Duration) float64 {
				slices.Sort(l)
				return float64(percentile(l, 0.5).Nanoseconds())
			}
			po, pn := p(latOff), p(latOn)
			b.ReportMetric(po, "off-p50-ns")
			b.ReportMetric(pn, "on-p50-ns")
			b.ReportMetric(pn/po, "on/off")
		})
	}
}
