package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/mpreg/mpreg/bus"
	"github.com/mpreg/mpreg/node"
	"github.com/mpreg/mpreg/schema"
)

// The functions of the objects phase, on nodes A and B: the rig's value,
// made once, and its length. Neither touches the bytes, so a transfer
// measures only their way from one node to the other.
const (
	ObjValue  = "bench_value"  // (size) []byte
	ObjLength = "bench_length" // ([]byte) int
)

// Names of the objects phase's two kinds of transfer.
const (
	ObjScenario    = "mpreg-a-to-b" // a step on A makes the value, a step on B takes it
	ObjRawScenario = "raw-put-get"  // a raw object put on one connection, a get on another
)

// objTimeout bounds one transfer of the objects phase.
const objTimeout = 2 * time.Minute

// objTargets are the objects phase's figures: MPREG's throughput against
// raw JetStream's, and the bytes every connection of the rig received
// while MPREG passed the value, against the value's size: it crosses the
// network once, to its one consuming node (what NATS adds to each 128 KiB
// chunk is well under 1%).
const (
	objRateTarget    = 0.8
	objCrossesTarget = 1.01
)

// registerObjects registers the objects phase's functions, and those of
// TestLoadObjectRSS, on n.
func (r *rig) registerObjects(n *node.Node) error {
	if err := registerObjFuncs(n); err != nil {
		return err
	}
	value := func(size int) ([]byte, error) {
		if size != len(r.objData) {
			return nil, fmt.Errorf("the bench value is %d bytes, not %d", len(r.objData), size)
		}
		return r.objData, nil // never changed, as node.Objects.Cache asks
	}
	if err := n.Register(ObjValue, value, node.Idempotent()); err != nil {
		return fmt.Errorf("bench: register %s: %w", ObjValue, err)
	}
	if err := n.Register(ObjLength, func(b []byte) int { return len(b) }, node.Idempotent()); err != nil {
		return fmt.Errorf("bench: register %s: %w", ObjLength, err)
	}
	return nil
}

// traffic is the bytes a connection received and sent.
type traffic struct{ in, out uint64 }

// traffic returns the bytes each of the rig's connections (and the
// client's) has received and sent so far, by connection name.
func (r *rig) traffic() map[string]traffic {
	out := map[string]traffic{}
	for _, nc := range append(slices.Clone(r.conns), r.client.Conn()) {
		s := nc.Stats()
		t := out[nc.Opts.Name]
		out[nc.Opts.Name] = traffic{in: t.in + s.InBytes, out: t.out + s.OutBytes}
	}
	return out
}

// objRun is what one kind of transfer measured over the rounds.
type objRun struct {
	name  string
	times []time.Duration
	bytes map[string]traffic // summed over the rounds, by connection
}

// record adds one transfer's time and the traffic between before and after.
func (o *objRun) record(d time.Duration, before, after map[string]traffic) {
	o.times = append(o.times, d)
	for name, a := range after {
		b := before[name]
		t := o.bytes[name]
		o.bytes[name] = traffic{in: t.in + a.in - b.in, out: t.out + a.out - b.out}
	}
}

// p50 is the median transfer's time.
func (o *objRun) p50() time.Duration {
	s := slices.Clone(o.times)
	slices.Sort(s)
	return percentile(s, 0.5)
}

// runObjects runs the objects phase and writes its report to w: after a
// round to warm up, rounds of a value of cfg.ObjectBytes passed by
// reference from a step on node A to a step on node B, alternating with a
// raw JetStream object put of the same bytes on one connection and a get
// on another (both in-process, as A's and B's are), into the same bucket,
// which is emptied after each transfer.
func (r *rig) runObjects(ctx context.Context, w io.Writer) error {
	for _, n := range r.nodes[:2] {
		select {
		case <-n.JetStreamKnown():
		case <-ctx.Done():
			return ctx.Err()
		}
		if n.JetStream() != node.JetStreamAvailable {
			return fmt.Errorf("bench: the objects phase needs JetStream, which node %s found %s", n.ID(), n.JetStream())
		}
	}
	put, err := r.objectStore(ctx, "mpreg-bench-obj-put")
	if err != nil {
		return err
	}
	get, err := r.objectStore(ctx, "mpreg-bench-obj-get")
	if err != nil {
		return err
	}
	mp := &objRun{name: ObjScenario, bytes: map[string]traffic{}}
	raw := &objRun{name: ObjRawScenario, bytes: map[string]traffic{}}
	for i := range 1 + r.cfg.ObjectRounds { // the first round warms up
		for _, k := range []struct {
			run *objRun
			f   func(context.Context) error
		}{{mp, r.objectsMPREG}, {raw, func(ctx context.Context) error { return rawPutGet(ctx, put, get, r.objData) }}} {
			before := r.traffic()
			t0 := time.Now()
			if err := k.f(ctx); err != nil {
				return fmt.Errorf("bench: %s: %w", k.run.name, err)
			}
			if d := time.Since(t0); i > 0 {
				k.run.record(d, before, r.traffic())
			}
			if err := emptyBucket(ctx, put); err != nil {
				return fmt.Errorf("bench: %s: %w", k.run.name, err)
			}
		}
	}
	return r.reportObjects(w, mp, raw)
}

// objectStore dials an in-process connection and opens the cluster's
// object bucket on it.
func (r *rig) objectStore(ctx context.Context, name string) (jetstream.ObjectStore, error) {
	nc, err := r.dial(ctx, name, true)
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	s, err := bus.OpenObjects(ctx, js, bus.ObjectsConfig{Cluster: r.cfg.Cluster})
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	return s, nil
}

// objectsMPREG is one request: ObjValue on A, whose result ObjLength on B
// takes by reference.
func (r *rig) objectsMPREG(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, objTimeout)
	defer cancel()
	resp, err := r.client.Run(ctx, &schema.Request{TimeoutMS: objTimeout.Milliseconds(), Cmds: []schema.Command{
		{Name: "|v", Fun: ObjValue, Args: []any{len(r.objData)}, Locs: []string{LocA}},
		{Name: "n", Fun: ObjLength, Args: []any{"|v"}, Locs: []string{LocB}},
	}})
	if err != nil {
		return err
	}
	if n, _ := resp.Results["n"].(int64); n != int64(len(r.objData)) {
		return fmt.Errorf("%w: length %v, not %d", errMismatch, resp.Results["n"], len(r.objData))
	}
	return nil
}

// rawPutGet puts data into the bucket on one connection and reads it
// whole on another (nats.go checks its SHA-256 at the end).
func rawPutGet(ctx context.Context, put, get jetstream.ObjectStore, data []byte) error {
	ctx, cancel := context.WithTimeout(ctx, objTimeout)
	defer cancel()
	name := "bench-raw/" + nuid.Next()
	if _, err := put.Put(ctx, jetstream.ObjectMeta{Name: name}, bytes.NewReader(data)); err != nil {
		return err
	}
	res, err := get.Get(ctx, name)
	if err != nil {
		return err
	}
	defer func() { _ = res.Close() }()
	buf := make([]byte, len(data))
	if _, err = io.ReadFull(res, buf); err != nil {
		return err
	}
	if n, err := res.Read(buf[:1]); n != 0 || !errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: the object is longer than the bytes put, or not their digest: %w", errMismatch, err)
	}
	return nil
}

// emptyBucket deletes every object in s, so that each transfer starts
// with an empty bucket (between transfers, not timed).
func emptyBucket(ctx context.Context, s jetstream.ObjectStore) error {
	l, err := s.List(ctx)
	if errors.Is(err, jetstream.ErrNoObjectsFound) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, o := range l {
		if err := s.Delete(ctx, o.Name); err != nil {
			return err
		}
	}
	return nil
}

const mib = 1 << 20

// reportObjects writes the objects phase's table, its bytes by
// connection, and its targets.
func (r *rig) reportObjects(w io.Writer, mp, raw *objRun) error {
	size := float64(len(r.objData))
	rounds := float64(len(mp.times))
	rate := func(o *objRun) float64 { return size / mib / o.p50().Seconds() }
	var b strings.Builder
	fmt.Fprintf(&b, "\nvalues by reference: %.0f MiB made by a step on node %s, taken by a step on node %s; %d rounds alternating with a raw JetStream object put and get\n",
		size/mib, LocA, LocB, len(mp.times))
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "transfer\tp50\tMiB/s\tvs raw\t")
	for _, o := range []*objRun{mp, raw} {
		fmt.Fprintf(tw, "%s\t%.3fs\t%.1f\t%.2fx\t\n", o.name, o.p50().Seconds(), rate(o), ratio(rate(o), rate(raw)))
	}
	_ = tw.Flush()
	fmt.Fprintf(&b, "\nMiB per transfer by connection (received / sent), over 64 KiB:\n")
	var inMP float64
	for _, o := range []*objRun{mp, raw} {
		names := make([]string, 0, len(o.bytes))
		for name, t := range o.bytes {
			if o == mp {
				inMP += float64(t.in)
			}
			if float64(t.in+t.out)/rounds > 64<<10 {
				names = append(names, name)
			}
		}
		sort.Strings(names)
		for _, name := range names {
			t := o.bytes[name]
			fmt.Fprintf(&b, "  %-14s %-26s %7.2f / %7.2f\n", o.name, name, float64(t.in)/rounds/mib, float64(t.out)/rounds/mib)
		}
	}
	crosses := inMP / rounds / size
	fmt.Fprintf(&b, "\ntargets (ratios in this run):\n")
	for _, t := range []struct {
		what      string
		got, want float64
		ok        bool
		detail    string
	}{
		{"mpreg MiB/s / raw put+get MiB/s", rate(mp) / rate(raw), objRateTarget, rate(mp)/rate(raw) >= objRateTarget,
			fmt.Sprintf("%.1f vs %.1f MiB/s", rate(mp), rate(raw))},
		{"MiB received by all connections / value", crosses, objCrossesTarget, crosses <= objCrossesTarget,
			fmt.Sprintf("%.2f MiB received per transfer of %.2f MiB", inMP/rounds/mib, size/mib)},
	} {
		verdict := "MISS"
		if t.ok {
			verdict = "PASS"
		}
		fmt.Fprintf(&b, "  %-4s  %-48s %5.2fx (target %.2fx; %s)\n", verdict, t.what, t.got, t.want, t.detail)
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("bench: write: %w", err)
	}
	return nil
}
