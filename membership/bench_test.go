package membership

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mpreg/mpreg/codec"
	"github.com/mpreg/mpreg/schema"
)

// The cluster of the scaling benchmarks: every node offers 50 of 1,000
// functions and has 2 of 20 locs, so a function is offered by about 5% of
// the nodes and a (function, loc) pair by about 0.5%.
const (
	benchFuns        = 1000
	benchFunsPerNode = 50
	benchLocs        = 20
)

var benchSizes = []int{10, 100, 1000, 10000}

// benchFunNames are the functions' names, made once.
var benchFunNames = func() []string {
	l := make([]string, benchFuns)
	for i := range l {
		l[i] = fmt.Sprint("fun", i)
	}
	return l
}()

// benchTable fills a table with n nodes of the benchmark cluster and
// returns it with the heartbeats of its nodes, encoded as a node sends
// them (JSON).
func benchTable(tb testing.TB, n int) (*Table, [][]byte) {
	tb.Helper()
	rng := rand.New(rand.NewPCG(1, uint64(n)))
	// A clock that stands still: filling a large table takes longer than
	// DeadAfter.
	now := time.Unix(1_800_000_000, 0)
	t := New(Config{Self: "self", MaxNodes: n + 1, Now: func() time.Time { return now }})
	hbs := make([][]byte, n)
	for i := range n {
		id := fmt.Sprintf("node-%05d", i)
		locs := []string{fmt.Sprintf("loc%d", rng.IntN(benchLocs)), fmt.Sprintf("loc%d", rng.IntN(benchLocs))}
		funs := make(map[string][]string, benchFunsPerNode)
		for len(funs) < benchFunsPerNode {
			funs[fmt.Sprintf("fun%d", rng.IntN(benchFuns))] = locs
		}
		h := &schema.Hello{Cluster: "bench", Node: id, Incarnation: 1, Version: 1, Funs: funs}
		t.ApplyHello(h)
		data, err := codec.JSON.Encode(&schema.Heartbeat{Cluster: "bench", Node: id, Incarnation: 1, Version: 1,
			Seq: 7, Load: schema.Load{Inflight: 3, Limit: 4096}})
		if err != nil {
			tb.Fatal(err)
		}
		hbs[i] = data
	}
	return t, hbs
}

// BenchmarkRoute is routing one step (Pick) at each cluster size: a
// function about 5% of the nodes offer, without locs and with one loc.
func BenchmarkRoute(b *testing.B) {
	for _, n := range benchSizes {
		t, _ := benchTable(b, n)
		for _, tc := range []struct {
			name string
			locs []string
		}{{"any", nil}, {"loc", []string{"loc3"}}} {
			b.Run(fmt.Sprintf("nodes=%d/%s", n, tc.name), func(b *testing.B) {
				b.ReportAllocs()
				found := 0
				for i := 0; b.Loop(); i++ {
					if _, ok := t.Pick(benchFunNames[i%benchFuns], tc.locs, nil); ok {
						found++
					}
				}
				if found == 0 && n >= 100 {
					b.Fatal("no step routed")
				}
			})
		}
	}
}

// BenchmarkHeartbeat is one heartbeat as a node takes it off the wire:
// decoded from its JSON body and applied to the table.
func BenchmarkHeartbeat(b *testing.B) {
	for _, n := range benchSizes {
		t, hbs := benchTable(b, n)
		b.Run(fmt.Sprintf("nodes=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				hb, err := readHB(hbs[i%n])
				if err != nil {
					b.Fatal(err)
				}
				if t.ApplyHeartbeat(hb) {
					b.Fatal("known node asks for a hello")
				}
			}
		})
	}
}

// BenchmarkHeartbeatTree is BenchmarkHeartbeat the generic way: the body
// decoded into a tree, then parsed.
func BenchmarkHeartbeatTree(b *testing.B) {
	t, hbs := benchTable(b, 1000)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		tree, err := codec.JSON.Decode(hbs[i%len(hbs)])
		if err != nil {
			b.Fatal(err)
		}
		hb, err := schema.ParseHeartbeat(tree)
		if err != nil {
			b.Fatal(err)
		}
		t.ApplyHeartbeat(hb)
	}
}

// BenchmarkHeartbeatReader is BenchmarkHeartbeat through the general
// reader over the bytes (codec.ReadSized with schema.ReadHeartbeat), with
// no tree either.
func BenchmarkHeartbeatReader(b *testing.B) {
	t, hbs := benchTable(b, 1000)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		hb, _, err := codec.ReadSized(codec.JSON, hbs[i%len(hbs)], codec.MaxDecoded, schema.ReadHeartbeat)
		if err != nil {
			b.Fatal(err)
		}
		t.ApplyHeartbeat(hb)
	}
}

// BenchmarkHeartbeatWhileRouting applies heartbeats while another
// goroutine routes steps without pause: the figure is the time one apply
// takes, which must not grow with the routing going on.
func BenchmarkHeartbeatWhileRouting(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		t, hbs := benchTable(b, n)
		b.Run(fmt.Sprintf("nodes=%d", n), func(b *testing.B) {
			var stop atomic.Bool
			var wg sync.WaitGroup
			var routed atomic.Int64
			wg.Go(func() {
				for i := 0; !stop.Load(); i++ {
					t.Pick(benchFunNames[i%benchFuns], nil, nil)
					routed.Add(1)
				}
			})
			var worst time.Duration
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				hb, err := readHB(hbs[i%n])
				if err != nil {
					b.Fatal(err)
				}
				t0 := time.Now()
				t.ApplyHeartbeat(hb)
				worst = max(worst, time.Since(t0))
			}
			stop.Store(true)
			wg.Wait()
			b.ReportMetric(float64(worst.Nanoseconds()), "worst-apply-ns")
			b.ReportMetric(float64(routed.Load())/b.Elapsed().Seconds(), "routes/s")
		})
	}
}

// BenchmarkPrune is one Prune of a table where every node is alive.
func BenchmarkPrune(b *testing.B) {
	for _, n := range benchSizes {
		t, _ := benchTable(b, n)
		b.Run(fmt.Sprintf("nodes=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if p := t.Prune(); len(p.Forgotten)+len(p.Silent) != 0 {
					b.Fatal("a live node pruned")
				}
			}
		})
	}
}

// readHB reads a heartbeat body the way mesh does: the JSON fast path.
func readHB(data []byte) (*schema.Heartbeat, error) {
	if hb, ok := schema.ReadHeartbeatJSON(data); ok {
		return hb, nil
	}
	return nil, fmt.Errorf("heartbeat %s is off the fast path", data)
}
