package bench

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mpreg/mpreg/durable"
	"github.com/mpreg/mpreg/internal/testwait"
)

// durableCallBudget is how many JetStream calls (API requests and KV
// publishes, one round trip each) node A may make for one durable-1
// request before it answers: TestDurableCalls fails above it. Measured 13
// when durable requests came in, 4 once what a finished request leaves is
// tidied after the answer (docs/BENCHMARKS.md, "Durable requests").
const durableCallBudget = 4

// tidyCall reports whether a call is of the tidying after the answer:
// the purges of what the request left, and its lease marked done.
func tidyCall(what string) bool {
	return strings.HasPrefix(what, "purge requests ") || what == "update leases l.*"
}

// jsCall is a JetStream call seen on the wire: what it was, who asked
// (its reply subject), and the request's store key when the call names it.
type jsCall struct {
	what, reply, key string
}

// storeKey finds a durable.Key in a call's subject or body.
var storeKey = regexp.MustCompile(`[0-9a-f]{32}`)

// jsCalls subscribes nc to every JetStream API request and KV publish and
// keeps them in order.
type jsCalls struct {
	mu    sync.Mutex
	calls []jsCall
	label func(*nats.Msg) string
}

func (c *jsCalls) add(m *nats.Msg) {
	what := c.label(m)
	key := storeKey.FindString(m.Subject)
	if key == "" {
		key = storeKey.FindString(string(m.Data))
	}
	c.mu.Lock()
	c.calls = append(c.calls, jsCall{what: what, reply: m.Reply, key: key})
	c.mu.Unlock()
}

func (c *jsCalls) since(i int) []jsCall {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.calls[i:])
}

func (c *jsCalls) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.calls)
}

// kvLabel names a JetStream call on the durable buckets of cluster by
// kind and key prefix ("create requests r.*", "get requests f.*",
// "purge requests s.*.*"), without the request's key.
func kvLabel(cluster string) func(*nats.Msg) string {
	names := map[string]string{
		durable.RequestsBucket("", cluster): "requests",
		durable.LeasesBucket("", cluster):   "leases",
	}
	key := func(k string) string { // r.<key> → r.*, s.<key>.<h> → s.*.*
		p := strings.Split(k, ".")
		for i := 1; i < len(p); i++ {
			p[i] = "*"
		}
		return strings.Join(p, ".")
	}
	bucketKey := func(s string) string { // <bucket>.<key>
		b, k, _ := strings.Cut(s, ".")
		if n, ok := names[b]; ok {
			b = n
		}
		return b + " " + key(k)
	}
	return func(m *nats.Msg) string {
		switch s := m.Subject; {
		case strings.HasPrefix(s, "$KV."):
			op := "put"
			switch {
			case m.Header.Get("KV-Operation") != "":
				op = strings.ToLower(m.Header.Get("KV-Operation"))
			case m.Header.Get(nats.ExpectedLastSubjSeqHdr) == "0":
				op = "create"
			case m.Header.Get(nats.ExpectedLastSubjSeqHdr) != "":
				op = "update"
			}
			return op + " " + bucketKey(strings.TrimPrefix(s, "$KV."))
		case strings.HasPrefix(s, "$JS.API.DIRECT.GET."):
			_, sub, _ := strings.Cut(strings.TrimPrefix(s, "$JS.API.DIRECT.GET."), ".$KV.")
			return "get " + bucketKey(sub)
		case strings.HasPrefix(s, "$JS.API.STREAM.PURGE."):
			var filter string
			if i := strings.Index(string(m.Data), `"filter":"$KV.`); i >= 0 {
				filter, _, _ = strings.Cut(string(m.Data[i+len(`"filter":"$KV.`):]), `"`)
			}
			return "purge " + bucketKey(filter)
		case strings.HasPrefix(s, "$JS.API.CONSUMER.CREATE."):
			return "watch (consumer create) " + bucketKey(consumerFilter(m.Data))
		default:
			p := strings.Split(strings.TrimPrefix(s, "$JS.API."), ".")
			return strings.ToLower(strings.Join(p[:min(2, len(p))], " "))
		}
	}
}

// consumerFilter is the bucket and key of a KV watch's consumer request.
func consumerFilter(body []byte) string {
	const f = `"filter_subject":"$KV.`
	i := strings.Index(string(body), f)
	if i < 0 {
		return "?"
	}
	s, _, _ := strings.Cut(string(body[i+len(f):]), `"`)
	return s
}

// respPrefix is the prefix of the reply subjects of nc's requests.
func respPrefix(nc *nats.Conn) string {
	in := nc.NewRespInbox()
	return in[:strings.LastIndexByte(in, '.')+1]
}

// TestDurableCalls lists the JetStream calls node A makes for one durable
// one-step request before it answers (the critical path), and the calls
// the nodes' takers make for it, for the table in docs/BENCHMARKS.md
// (BenchmarkDurableStore times each). Most requests must make the same
// calls, create the request's record, lease, step and final once each,
// and stay within durableCallBudget; the tidying after the answer (purges,
// the lease marked done) is listed apart. (A subscriber on $JS.API.> and
// $KV.> sees each call; node A's are told by the reply subjects of its
// connection, a request's by its store key; the lease marked done is the
// last call of a request.)
func TestDurableCalls(t *testing.T) {
	r := fixtureOf(t, fixtureKey{durable: true})
	f := r.ops()[ScenarioDurable1]
	ctx := context.Background()
	nc, err := r.dial(ctx, "mpreg-bench-js-calls", true)
	if err != nil {
		t.Fatal(err)
	}
	calls := &jsCalls{label: kvLabel(r.cfg.Cluster)}
	for _, subj := range []string{"$JS.API.>", "$KV.>"} {
		sub, err := nc.Subscribe(subj, calls.add)
		if err != nil {
			t.Fatal(err)
		}
		_ = sub.SetPendingLimits(-1, -1)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	for range 5 { // warm up
		if err := f(ctx); err != nil {
			t.Fatal(err)
		}
	}
	aPre := respPrefix(r.nodeNCs[0])
	const n = 50
	var (
		paths  = map[string][][]jsCall{} // A's calls before its answer, by the calls made
		others = map[string]int{}
		mark   = calls.len()
	)
	for range n {
		if err := f(ctx); err != nil {
			t.Fatal(err)
		}
		// The lease marked done is A's last call of the request; the
		// others' may reach this connection after it.
		var seen []jsCall
		key := ""
		testwait.For(t, "node A's lease marked done", func() error {
			seen = calls.since(mark)
			for j, c := range seen {
				if strings.HasPrefix(c.reply, aPre) && c.what == "create requests r.*" {
					key = c.key
				}
				if strings.HasPrefix(c.reply, aPre) && c.what == "update leases l.*" && c.key == key {
					seen = seen[:j+1]
					return nil
				}
			}
			return errors.New("not seen yet")
		})
		mark += len(seen)
		var path []jsCall
		for _, c := range seen {
			switch {
			case !strings.HasPrefix(c.reply, aPre):
				others[c.what]++
			case c.key == key || c.key == "":
				path = append(path, c)
			default: // A's taker, reading an earlier request
				others["node A: "+c.what]++
			}
		}
		// The order they reach this connection in varies: KV publishes
		// and API requests come by different ways.
		w := whats(path)
		slices.Sort(w)
		seq := strings.Join(w, "|")
		paths[seq] = append(paths[seq], path)
	}
	// The calls most requests made.
	var mode [][]jsCall
	for _, p := range paths {
		if len(p) > len(mode) {
			mode = p
		}
	}
	var path, tidy []string
	for _, what := range whats(mode[0]) {
		if tidyCall(what) {
			tidy = append(tidy, what)
		} else {
			path = append(path, what)
		}
	}
	slices.Sort(path)
	slices.Sort(tidy)
	var b strings.Builder
	fmt.Fprintf(&b, "node A's JetStream calls for one durable-1 request, before its answer, as %d of %d requests made them (%d calls):\n", len(mode), n, len(path))
	listCalls(&b, path)
	fmt.Fprintf(&b, "after its answer, tidying up (%d calls):\n", len(tidy))
	listCalls(&b, tidy)
	fmt.Fprintf(&b, "other calls, per request (the takers', for earlier requests):\n")
	for _, what := range slices.Sorted(maps.Keys(others)) {
		fmt.Fprintf(&b, "  %-48s %.2f\n", what, float64(others[what])/n)
	}
	t.Log("\n" + b.String())
	if len(mode) < n/2 {
		t.Errorf("no sequence of calls made by most requests: %d sequences", len(paths))
	}
	for _, want := range []string{"create requests r.*", "create leases l.*", "create requests f.*"} {
		if k := countOf(path, want); k != 1 {
			t.Errorf("%q %d times on the path, want once", want, k)
		}
	}
	if len(path) > durableCallBudget {
		t.Errorf("node A makes %d JetStream calls before it answers a durable-1 request, over the budget of %d", len(path), durableCallBudget)
	}
}

// listCalls writes the sorted calls l, each with its count.
func listCalls(b *strings.Builder, l []string) {
	for i, what := range l {
		if i == 0 || what != l[i-1] {
			fmt.Fprintf(b, "  %-48s %d\n", what, countOf(l, what))
		}
	}
}

func whats(l []jsCall) []string {
	out := make([]string, len(l))
	for i, c := range l {
		out[i] = c.what
	}
	return out
}

func countOf(l []string, s string) int {
	n := 0
	for _, x := range l {
		if x == s {
			n++
		}
	}
	return n
}

// BenchmarkDurableStore times each call of the durable store that node A
// makes, in this order, for a one-step durable request before it answers
// (node/durable.go): Accept (create the record, read the final), Acquire
// (create the lease), Cancelled (read the cancel mark and the record),
// Steps (read the record, scan the steps with a KV watch), RecordStep
// (create the step), Finish (create the final, purge record, cancel mark
// and steps) and Release (delete the lease), on the embedded file store
// of the durable fixture, in buckets of their own. It reports each one's
// median; ns/op is the whole sequence.
func BenchmarkDurableStore(b *testing.B) {
	r := fixtureOf(b, fixtureKey{durable: true})
	ctx := context.Background()
	nc, err := r.dial(ctx, "mpreg-bench-durable-store", true)
	if err != nil {
		b.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	store, err := durable.Open(ctx, js, durable.Options{Cluster: "bench-store"})
	if err != nil {
		b.Fatal(err)
	}
	names := []string{"accept", "acquire", "cancelled", "steps", "record-step", "finish", "release"}
	lat := make([][]time.Duration, len(names))
	ids := newDurableIDs()
	value := []byte("\xb0" + r.payload) // a msgpack string, as a step's result is recorded
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		id := ids.next()
		key := durable.Key("", id)
		rec := &durable.Record{ID: id, Sum: "s", Steps: 1, CreatedMS: time.Now().UnixMilli(),
			DeadlineMS: time.Now().Add(time.Minute).UnixMilli(), ResultTTLMS: 60_000}
		var lease *durable.Lease
		steps := []func() error{
			func() error { _, _, err := store.Accept(ctx, rec); return err },
			func() (err error) { lease, err = store.Acquire(ctx, key, "bench/1"); return err },
			func() error { _, err := store.Cancelled(ctx, key); return err },
			func() error { _, err := store.Steps(ctx, key); return err },
			func() error { _, err := store.RecordStep(ctx, key, "r", value); return err },
			func() error {
				_, err := store.Finish(ctx, key, &durable.Final{ID: id, Sum: "s", Status: durable.StatusDone, Steps: 1, StepsDone: 1}, time.Minute)
				return err
			},
			func() error { return lease.Release(ctx) },
		}
		for i, f := range steps {
			t0 := time.Now()
			if err := f(); err != nil {
				b.Fatalf("%s: %v", names[i], err)
			}
			lat[i] = append(lat[i], time.Since(t0))
		}
	}
	b.StopTimer()
	for i, name := range names {
		slices.Sort(lat[i])
		b.ReportMetric(float64(percentile(lat[i], 0.5).Nanoseconds()), name+"-ns")
	}
}
