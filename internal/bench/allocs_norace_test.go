//go:build !race

package bench

import (
	"context"
	"testing"
)

// allocBudget is, per scenario, how many heap objects one call may
// allocate in the whole process beyond what a raw-nats call does, as
// BenchmarkOwnCPU's own-allocs/op counts them. Allocation counts do not
// depend on the machine's speed, so this holds in CI. (The race detector
// changes them: this file is built without it.) Each is the figure
// measured plus 3, but rpc-json's is its target, 60. JSON bodies are written
// by encoding/json, 8 more per reply than the hand-written encoder it
// replaced (docs/BENCHMARKS.md, "Hand-written codecs against the libraries").
var allocBudget = map[string]float64{
	ScenarioRPCJSON:    60, // 59 measured, held to the target; 73 before wire structs were read from the bytes
	ScenarioClientCall: 41, // 38; 76 before
	ScenarioRPCRun:     88, // 85; 117 before
}

// TestAllocBudget fails when a one-step call allocates more than its
// budget: the median, over alternating batches, of a batch's heap objects
// per call minus raw-nats'.
func TestAllocBudget(t *testing.T) {
	r := fixture(t)
	ops := r.ops()
	ctx := context.Background()
	for name, budget := range allocBudget {
		raw, f := ops[ScenarioRaw], ops[name]
		batch := func(f op) float64 {
			m0 := mallocs()
			for range ownBatch {
				if err := f(ctx); err != nil {
					t.Fatalf("%s: %v", name, err)
				}
			}
			return float64(mallocs()-m0) / ownBatch
		}
		batch(raw) // warm both up: pools, buffers, routes
		batch(f)
		var own []float64
		for range 9 {
			r := batch(raw)
			own = append(own, batch(f)-r)
		}
		got := median(own)
		t.Logf("%s: %.1f allocations per call beyond raw-nats' (budget %.0f)", name, got, budget)
		if got > budget {
			t.Errorf("%s allocates %.1f heap objects per call beyond raw-nats', over its budget of %.0f", name, got, budget)
		}
	}
}
