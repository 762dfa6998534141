package bench

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/mpreg/mpreg/codec"
)

// BenchmarkJSONDecoderAB alternates batches of calls with the hand-written
// JSON decoder and reader and with jsontext's (temporary).
func BenchmarkJSONDecoderAB(b *testing.B) {
	for _, name := range []string{ScenarioRPCJSON} {
		b.Run(name, func(b *testing.B) {
			f := fixture(b).ops()[name]
			ctx := context.Background()
			var lat [2][]time.Duration
			var cpu [2][]float64
			var diff, adiff []float64
			batch := func(lib bool, n int) (float64, float64) {
				codec.SetJSONDecoderLib(lib)
				defer codec.SetJSONDecoderLib(false)
				i := 0
				if lib {
					i = 1
				}
				c0, _ := processCPU()
				m0 := mallocs()
				for range n {
					t0 := time.Now()
					if err := f(ctx); err != nil {
						b.Fatal(err)
					}
					lat[i] = append(lat[i], time.Since(t0))
				}
				m1 := mallocs()
				c1, _ := processCPU()
				per := float64((c1 - c0).Nanoseconds()) / float64(n)
				cpu[i] = append(cpu[i], per)
				return per, float64(m1-m0) / float64(n)
			}
			b.ResetTimer()
			for done := 0; done < b.N; {
				n := min(ownBatch, b.N-done)
				h, ha := batch(false, n)
				l, la := batch(true, n)
				diff, adiff = append(diff, l-h), append(adiff, la-ha)
				done += n
			}
			b.StopTimer()
			for i, v := range []string{"hand", "lib"} {
				slices.Sort(lat[i])
				b.ReportMetric(float64(percentile(lat[i], 0.5).Nanoseconds()), v+"-p50-ns")
				b.ReportMetric(median(cpu[i]), v+"-cpu-ns/op")
			}
			b.ReportMetric(median(diff), "lib-minus-hand-cpu-ns/op")
			b.ReportMetric(median(adiff), "lib-minus-hand-allocs/op")
		})
	}
}
