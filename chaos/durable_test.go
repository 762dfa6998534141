package chaos_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/mpreg/mpreg/bus"
	"github.com/mpreg/mpreg/codec"
	"github.com/mpreg/mpreg/durable"
	"github.com/mpreg/mpreg/internal/testcluster"
	"github.com/mpreg/mpreg/node"
	"github.com/mpreg/mpreg/schema"
)

// Sizes and timings of the durable run. The store bounds its pace: three
// embedded JetStream servers keeping three replicas take some 20 ms to
// record a step under -race on an idle machine, and ten times that on a
// loaded one, so the stream is paced by a cap on the requests not yet
// ended, runs for durStreamFor, and sends what the cluster takes in that
// time, at most maxRequests.
const (
	maxRequests  = 600
	durInFlight  = 12                    // submitted and not yet ended, at most
	durPace      = 10 * time.Millisecond // one submission per tick at most
	durStreamFor = 20 * time.Second
	durKills     = 5               // nodes killed during the stream, evenly spaced; a server stopped after the middle one
	durNodes     = 4               // nodes running, but for a moment at each kill
	durReplicas  = 3               // replicas of the durable buckets
	durDeadAfter = 2 * time.Second // the nodes' Gossip.DeadAfter
	minSteps     = 3
	maxSteps     = 5
	minStepMS    = 20
	maxStepMS    = 200
	// failOneIn: one request in failOneIn has a step whose function fails
	// on purpose.
	failOneIn = 12
	// durTimeout is every request's timeout_ms: far longer than the run, so
	// that no request ends by its budget.
	durTimeout = 30 * time.Second
	// submitWait is how long a submission waits for its answer before it
	// is sent again (its planner died before answering).
	submitWait = 2 * time.Second
	// statusWaitMS is the wait_ms of a status query after the first. Each
	// waiting query costs a KV watch (a consumer) on the store.
	statusWaitMS = 5000
	// bucketsWithin bounds the creation of the durable buckets.
	bucketsWithin = 30 * time.Second
	// maxPollErrs is how many submissions or status queries of a request
	// may go unanswered before the test gives up on it.
	maxPollErrs = 20
	// longestRequest is the run time of the longest request, all its steps
	// at their longest.
	longestRequest = maxSteps * maxStepMS * time.Millisecond
	// endSlack is what may pass, beyond a lease's TTL and the longest
	// request, after the last fault and the last submission until every
	// request has ended: a lapse is seen about half a second after the
	// TTL, one no watcher saw is found by a sweep (every 5 s), and the
	// machine is loaded.
	endSlack = 7 * time.Second
	// deliberate starts the text of the error a failing step returns.
	deliberate = "deliberate failure at"
)

// durReq is one durable request of the run: a chain of link steps s1…sN,
// each appending its number to the previous one's result, starting from
// the request's id, so that step i returns (and logs) the tag
// "<id>/1/…/i". Step failAt, when not 0, is a flunk: it logs its tag and
// fails with FUNCTION_ERROR.
type durReq struct {
	id     string
	steps  int
	failAt int
	ms     []int64

	sent, accepted, ended time.Time
	resent                int            // submissions sent again, unanswered
	refused               *schema.Error  // the submission's refusal
	st                    *schema.Status // the status it ended with; nil: never seen ended
	planners              []string       // planners seen running it, in order, without repeats
	unknown               int            // status queries that said unknown after it was accepted
	pollErrs              int            // status queries without an answer
}

func newDurReq(i int) *durReq {
	r := &durReq{id: fmt.Sprintf("dur-%04d", i), steps: minSteps + rand.IntN(maxSteps-minSteps+1)}
	if i%failOneIn == failOneIn/2 {
		r.failAt = 1 + rand.IntN(r.steps)
	}
	for range r.steps {
		r.ms = append(r.ms, minStepMS+rand.Int64N(maxStepMS-minStepMS+1))
	}
	return r
}

// tag is what step i (1-based) returns.
func (r *durReq) tag(i int) string {
	var b strings.Builder
	b.WriteString(r.id)
	for k := 1; k <= i; k++ {
		b.WriteString("/" + strconv.Itoa(k))
	}
	return b.String()
}

// request is the submission of r.
func (r *durReq) request() *schema.Request {
	req := &schema.Request{ID: r.id, TimeoutMS: durTimeout.Milliseconds(),
		Durability: schema.Durability{Durable: true, Submit: true, ResultTTLMS: time.Minute.Milliseconds()}}
	var prev any = r.id
	for i := 1; i <= r.steps; i++ {
		fun := "link"
		if i == r.failAt {
			fun = "flunk"
		}
		// A top-level string naming a command is its result; "2" names none.
		req.Cmds = append(req.Cmds, schema.Command{Name: "s" + strconv.Itoa(i), Fun: fun, Args: []any{r.ms[i-1], prev, strconv.Itoa(i)}})
		prev = "s" + strconv.Itoa(i)
	}
	return req
}

// sawPlanner notes a planner seen running r.
func (r *durReq) sawPlanner(p string) {
	if p != "" && (len(r.planners) == 0 || r.planners[len(r.planners)-1] != p) {
		r.planners = append(r.planners, p)
	}
}

// linker returns a function of (ms, prev, part) that logs the tag
// prev/part under label, sleeps ms and returns the tag, or, with fail, an
// error naming the tag.
func (x *execLog) linker(label string, fail bool) func(ctx context.Context, ms int64, prev, part string) (string, error) {
	sleep := x.sleeper(label)
	return func(ctx context.Context, ms int64, prev, part string) (string, error) {
		tag, err := sleep(ctx, ms, prev+"/"+part)
		if err == nil && fail {
			return "", fmt.Errorf("%s %s", deliberate, tag)
		}
		return tag, err
	}
}

// durableFuncs registers link and flunk, both idempotent: a step lost with
// its node runs again elsewhere.
func durableFuncs(h *harness, n *node.Node, label string) {
	for fun, fail := range map[string]bool{"link": false, "flunk": true} {
		require.NoError(h.t, n.Register(fun, h.execs.linker(label, fail), node.WithParams("ms", "prev", "part"), node.Idempotent()))
	}
}

// durableBuckets creates the cluster's durable buckets with durReplicas
// copies, as an operator does before starting nodes (the nodes open them
// as they are), and checks their replicas, and that their reads go to the
// leader (TestDurableReadsOwnWrites).
func durableBuckets(t *testing.T, url string) {
	t.Helper()
	js, err := jetstream.New(testcluster.Conn(t, url))
	require.NoError(t, err)
	// A new JetStream cluster elects its meta leader first, which takes a
	// while on a loaded machine: poll, a little longer than other waits.
	ctx, cancel := context.WithTimeout(context.Background(), bucketsWithin)
	defer cancel()
	tk := time.NewTicker(50 * time.Millisecond)
	defer tk.Stop()
	for {
		octx, ocancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := durable.Open(octx, js, durable.Options{Cluster: bus.DefaultCluster, Replicas: durReplicas})
		ocancel()
		if err == nil {
			break
		}
		select {
		case <-tk.C:
		case <-ctx.Done():
			t.Fatalf("the durable buckets not created within %v: %v", bucketsWithin, err)
		}
	}
	for _, b := range []string{durable.RequestsBucket("", bus.DefaultCluster), durable.LeasesBucket("", bus.DefaultCluster)} {
		s, err := js.Stream(ctx, "KV_"+b)
		require.NoError(t, err)
		cfg := s.CachedInfo().Config
		require.Equal(t, durReplicas, cfg.Replicas, "bucket %s", b)
		require.False(t, cfg.AllowDirect, "bucket %s: reads from any replica", b)
	}
}

// durRun is the durable run: its nodes, the submitters' connections and
// the requests.
type durRun struct {
	h    *harness
	subj bus.Subjects
	subs []*nats.Conn // one connection per server, to submit and ask

	mu     sync.Mutex
	live   []*proc
	next   int // number of the next node
	reqs   []*durReq
	killed []string // the nodes killed, in order
}

// startNode starts the next node, on the servers in an order of its own.
func (d *durRun) startNode() *proc {
	d.next++
	id := fmt.Sprintf("n%d", d.next)
	n, k := len(d.h.urls), d.next
	p := d.h.startProc(id, id, []int{k % n, (k + 1) % n, (k + 2) % n})
	select {
	case <-p.n.JetStreamKnown():
	case <-time.After(testcluster.Timeout):
		d.h.t.Fatalf("%s: the JetStream probe did not end", id)
	}
	require.Equal(d.h.t, node.JetStreamAvailable, p.n.JetStream(), id)
	d.mu.Lock()
	d.live = append(d.live, p)
	d.mu.Unlock()
	return p
}

// victim picks the node to kill: with planner, a node seen running a
// request that has not ended (any node when none is), else any node.
func (d *durRun) victim(planner bool) (p *proc, wasPlanner bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	planning := map[string]bool{}
	for _, r := range d.reqs {
		if r.ended.IsZero() && len(r.planners) > 0 {
			planning[r.planners[len(r.planners)-1]] = true
		}
	}
	var candidates []*proc
	for _, q := range d.live {
		if planning[q.id] {
			candidates = append(candidates, q)
		}
	}
	if !planner || len(candidates) == 0 {
		candidates = d.live
	}
	p = candidates[rand.IntN(len(candidates))]
	d.live = slices.DeleteFunc(d.live, func(q *proc) bool { return q == p })
	d.killed = append(d.killed, p.id)
	return p, planning[p.id]
}

// send sends body on subject by sub and reads the Status it answers.
func send(ctx context.Context, sub *nats.Conn, subject string, body any, wait time.Duration) (*schema.Status, error) {
	data, err := codec.JSON.Encode(body)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	m, err := sub.RequestMsgWithContext(ctx, &nats.Msg{Subject: subject, Data: data,
		Header: nats.Header{codec.HeaderContentType: []string{codec.JSONType}}})
	if err != nil {
		return nil, err
	}
	st, _, err := codec.ReadSized(codec.JSON, m.Data, codec.MaxDecoded, schema.ReadStatus)
	if err != nil {
		return nil, fmt.Errorf("%w: %w (%q)", errBadAnswer, err, m.Data)
	}
	return st, nil
}

var errBadAnswer = errors.New("an answer that does not read as a Status")

// submit submits r by sub until it is answered, sending it again (the same
// id: a durable request runs once per id) when its planner died before
// answering. It reports whether r was accepted.
func (d *durRun) submit(ctx context.Context, sub *nats.Conn, r *durReq) bool {
	r.sent = time.Now()
	for ctx.Err() == nil {
		st, err := send(ctx, sub, d.subj.RPC(), r.request(), submitWait)
		switch {
		case errors.Is(err, errBadAnswer):
			r.refused = schema.Wrap(schema.CodeInternal, err, "submission")
			return false
		case err != nil && r.resent < maxPollErrs:
			d.mu.Lock()
			r.resent++
			d.mu.Unlock()
			continue
		case err != nil:
			return false
		case st.Error != nil || st.ID != r.id:
			r.refused = st.Error
			if r.refused == nil {
				r.refused = schema.Errorf(schema.CodeInternal, "answered for id %q", st.ID)
			}
			return false
		}
		d.mu.Lock()
		r.accepted = time.Now()
		d.mu.Unlock()
		return true
	}
	return false
}

// watch asks the status of r, waiting up to statusWaitMS each time (at
// once the first time, to see its planner), until it has ended or ctx
// ends.
func (d *durRun) watch(ctx context.Context, sub *nats.Conn, r *durReq) {
	wait := int64(0)
	for ctx.Err() == nil {
		st, err := send(ctx, sub, d.subj.Status(), schema.StatusRequest{ID: r.id, WaitMS: wait}, time.Duration(wait)*time.Millisecond+submitWait)
		wait = statusWaitMS
		d.mu.Lock()
		switch {
		case err != nil: // its node died while it waited
			r.pollErrs++
		case st.Status == schema.StatusUnknown && st.Error != nil: // the query failed: JetStream did not answer it
			r.pollErrs++
		case st.Status == schema.StatusUnknown:
			r.unknown++
		case st.Status == schema.StatusRunning:
			r.sawPlanner(st.Planner)
		case schema.StatusEnded(st.Status):
			r.sawPlanner(st.Planner)
			r.st, r.ended = st, time.Now()
		}
		ended, failing := r.st != nil, r.pollErrs >= maxPollErrs
		d.mu.Unlock()
		if ended || failing || errors.Is(err, errBadAnswer) {
			return
		}
	}
}

// stream submits up to maxRequests requests, at most durInFlight of them
// not ended at once, each on a goroutine that submits it and watches it
// end (until watchCtx ends), until ctx ends.
func (d *durRun) stream(ctx, watchCtx context.Context, wg *sync.WaitGroup) {
	slots := make(chan struct{}, durInFlight)
	tk := time.NewTicker(durPace)
	defer tk.Stop()
	for i := range maxRequests {
		select {
		case <-tk.C:
		case <-ctx.Done():
			return
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		r := newDurReq(i)
		d.mu.Lock()
		d.reqs = append(d.reqs, r)
		d.mu.Unlock()
		sub := d.subs[i%len(d.subs)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			if d.submit(watchCtx, sub, r) {
				d.watch(watchCtx, sub, r)
			}
		}()
	}
}

// TestChaosDurable submits a steady stream of durable requests (chains of
// 3 to 5 sleeping steps, a few failing on purpose) to four nodes on a
// JetStream cluster of three servers, whose durable buckets keep three
// replicas (read from their leaders: see durableBuckets), and kills nodes
// meanwhile, planners included (their sockets cut: no goodbye, no lease
// released), starting a new node after each; midway it stops one of the
// servers, leaving the buckets two of their three replicas.
// Every accepted request must end: done with the result its tag says, or
// failed with the FUNCTION_ERROR of its failing step. A step runs at least
// once, and more than once only in a request that lived through a kill.
func TestChaosDurable(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos run takes several seconds")
	}
	h := newHarness(t, testcluster.JetStreamCluster, 3, slog.LevelInfo, durDeadAfter, durableFuncs)
	durableBuckets(t, h.urls[0])
	d := &durRun{h: h, subj: bus.NewSubjects("", bus.DefaultCluster)}
	for range durNodes {
		d.startNode()
	}
	for _, p := range d.live {
		testcluster.WaitForRoute(t, p.n.Table(), "link", nil, "n1", "n2", "n3", "n4")
	}
	for i := range h.urls { // submitters on every server: the queue group serves a request on its server
		d.subs = append(d.subs, h.connect(fmt.Sprintf("submitter-%d", i), []int{i, (i + 1) % 3, (i + 2) % 3}))
	}

	stalls := startStallMonitor(t)
	fl := &faultLog{t: t, t0: time.Now()}
	streamCtx, stopStream := context.WithDeadline(context.Background(), fl.t0.Add(durStreamFor))
	watchCtx, stopWatching := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	streamed := make(chan struct{})
	go func() { defer close(streamed); d.stream(streamCtx, watchCtx, &wg) }()
	t.Cleanup(func() { stopStream(); <-streamed; stopWatching(); wg.Wait() }) // before the cluster is torn down

	for k := range durKills {
		fl.at(durStreamFor * time.Duration(k+1) / (durKills + 1))
		p, planned := d.victim(k%2 == 0)
		fl.do(fmt.Sprintf("kill %s (socket cut; it planned a running request: %v)", p.id, planned), p.kill)
		t.Cleanup(func() { <-p.closed })
		fl.do("start a new node", func() { d.startNode() })
		if k == durKills/2 {
			fl.at(durStreamFor * time.Duration(2*k+3) / (2 * (durKills + 1)))
			fl.do("stop nats-server 3 (its nodes and submitter fail over; the buckets keep 2 of 3 replicas)", h.servers[2].Shutdown)
		}
	}
	<-streamed
	lastEvent := time.Now()
	bound := durable.DefaultLeaseTTL + longestRequest + endSlack
	watched := make(chan struct{})
	go func() { wg.Wait(); close(watched) }()
	select {
	case <-watched:
	case <-time.After(time.Until(lastEvent.Add(bound))):
		stopWatching() // the requests not ended by now are lost
		<-watched
	}
	t.Logf("status polling ended %v after the last fault and submission (bound %v)", time.Since(lastEvent).Round(time.Millisecond), bound)
	d.report(fl, stalls)
}

// durTally is what the run's report counts.
type durTally struct {
	sent, accepted, done, failed, lost, refused, resent int
	deliberate                                          int // accepted requests with a failing step
	stepRuns, reruns, rerunReqs, takenOver, unknown     int
	afterEnd                                            int      // step runs started after their request was seen ended
	afterEndReqs                                        []string // the requests they belong to
	lat                                                 []time.Duration
	problems                                            []string
}

// report checks every request and logs the run's counts.
func (d *durRun) report(fl *faultLog, stalls *stallMonitor) {
	t := d.h.t
	t.Helper()
	runs := d.h.execs.snapshot()
	d.mu.Lock()
	reqs := slices.Clone(d.reqs)
	d.mu.Unlock()
	var c durTally
	excused := 0
	for _, r := range reqs {
		c.sent++
		c.resent += r.resent
		if r.refused != nil {
			c.refused++
			c.problems = append(c.problems, fmt.Sprintf("%s: submission refused: %v", r.id, r.refused))
			continue
		}
		if r.accepted.IsZero() {
			c.problems = append(c.problems, fmt.Sprintf("%s: submission never answered (sent %d times)", r.id, r.resent+1))
			continue
		}
		c.accepted++
		if r.failAt > 0 {
			c.deliberate++
		}
		c.unknown += r.unknown
		problem := r.outcome()
		if problem == "" {
			problem = d.steps(r, runs, &c, fl, stalls, &excused)
		}
		switch {
		case problem != "":
			c.lost++
			c.problems = append(c.problems, r.id+": "+problem)
		case r.st.Status == schema.StatusDone:
			c.done++
		default:
			c.failed++
		}
		if r.st != nil {
			c.lat = append(c.lat, r.ended.Sub(r.accepted))
			if len(r.planners) > 1 { // the one that ended it is the last
				c.takenOver++
			}
		}
	}
	d.log(&c, fl, stalls, excused)
	for _, p := range c.problems[:min(len(c.problems), 50)] {
		t.Error(p)
	}
	require.Zero(t, c.lost, "accepted requests lost: never ended, or ended with a wrong result or an error their functions did not cause")
	require.Equal(t, c.sent, c.accepted, "every submission accepted")
	require.Equal(t, c.accepted, c.done+c.failed)
	require.Equal(t, c.deliberate, c.failed, "exactly the requests with a failing step failed")
	require.Positive(t, c.takenOver, "some request was taken over from a planner that died")
	require.Empty(t, c.problems)
}

// outcome checks the status r ended with against its tag: done with the
// last step's tag, or failed with its failing step's FUNCTION_ERROR.
func (r *durReq) outcome() string {
	st := r.st
	switch {
	case st == nil:
		return fmt.Sprintf("accepted, never ended (planners seen %v, status queries unanswered %d, answered unknown %d)", r.planners, r.pollErrs, r.unknown)
	case r.unknown > 0:
		return fmt.Sprintf("status said unknown %d times after the request was accepted", r.unknown)
	case st.Steps != int64(r.steps):
		return fmt.Sprintf("status says %d steps, want %d", st.Steps, r.steps)
	case r.failAt == 0 && st.Status != schema.StatusDone:
		return fmt.Sprintf("ended %s: %v", st.Status, st.Error)
	case r.failAt == 0 && (st.Error != nil || !equal(st.Result, map[string]any{"s" + strconv.Itoa(r.steps): r.tag(r.steps)})):
		return fmt.Sprintf("done with result %v, error %v, want s%d=%s", st.Result, st.Error, r.steps, r.tag(r.steps))
	case r.failAt == 0 && st.StepsDone != int64(r.steps):
		return fmt.Sprintf("done with %d of %d steps recorded", st.StepsDone, r.steps)
	case r.failAt > 0 && st.Status != schema.StatusFailed:
		return fmt.Sprintf("step %d fails, yet it ended %s (result %v)", r.failAt, st.Status, st.Result)
	case r.failAt > 0 && (st.Error == nil || st.Error.Code != schema.CodeFunctionError || !strings.Contains(st.Error.Message, deliberate+" "+r.tag(r.failAt))):
		return fmt.Sprintf("failed with %v, not with the FUNCTION_ERROR of its step %d", st.Error, r.failAt)
	}
	return ""
}

// steps checks how often each step of r ran: at least once up to its
// failing step, never after it, and more than once only in a request that
// lived through a kill (or a stall of the whole process long enough to
// make a node look dead or a lease lapse). Runs that started after the
// request was seen ended are counted apart (see
// TestDurableFinishedNotRunAgain).
func (d *durRun) steps(r *durReq, runs map[string][]string, c *durTally, fl *faultLog, stalls *stallMonitor, excused *int) string {
	if p := r.ranAsTold(runs, c); p != "" {
		return p
	}
	extra, late := 0, 0
	for i := 1; i <= r.steps; i++ {
		at := d.h.execs.startedAt(r.tag(i))
		extra += max(0, len(at)-1)
		for _, a := range at {
			if a.After(r.ended) {
				late++
			}
		}
	}
	if late > 0 {
		c.afterEnd += late
		c.afterEndReqs = append(c.afterEndReqs, r.id)
		return fmt.Sprintf("%d step runs started after the request ended (%s)", late, r.describe(runs, fl))
	}
	if extra -= late; extra == 0 {
		return ""
	}
	c.reruns += extra
	c.rerunReqs++
	for _, f := range fl.faults {
		if at := fl.t0.Add(f.start); strings.HasPrefix(f.what, "kill") && !at.Before(r.sent) && !at.After(r.ended) {
			return ""
		}
	}
	if _, longest := stalls.within(r.sent.Add(-time.Second), r.ended); longest >= stallExcuse {
		*excused++
		return ""
	}
	return fmt.Sprintf("%d step runs more than its %d steps, without a kill while it ran (%s)", extra, r.steps, r.describe(runs, fl))
}

// ranAsTold checks that each step up to the failing one ran, and none
// after it, and counts the runs.
func (r *durReq) ranAsTold(runs map[string][]string, c *durTally) string {
	last := r.steps
	if r.failAt > 0 {
		last = r.failAt
	}
	for i := 1; i <= r.steps; i++ {
		n := len(runs[r.tag(i)])
		c.stepRuns += n
		switch {
		case i <= last && n == 0:
			return fmt.Sprintf("step %d never ran, yet the request ended %s", i, r.st.Status)
		case i > last && n > 0:
			return fmt.Sprintf("step %d ran %d times after step %d failed", i, n, last)
		}
	}
	return ""
}

// describe tells when r lived, who planned it and where its steps ran.
func (r *durReq) describe(runs map[string][]string, fl *faultLog) string {
	var ran []string
	for i := 1; i <= r.steps; i++ {
		ran = append(ran, fmt.Sprintf("s%d on %v", i, runs[r.tag(i)]))
	}
	return fmt.Sprintf("sent at %dms, seen ended at %dms, planners seen %v: %s",
		r.sent.Sub(fl.t0).Milliseconds(), r.ended.Sub(fl.t0).Milliseconds(), r.planners, strings.Join(ran, ", "))
}

// log logs the run's counts.
func (d *durRun) log(c *durTally, fl *faultLog, stalls *stallMonitor, excused int) {
	t := d.h.t
	pct := percentiles(c.lat)
	t.Logf("durable requests: sent %d, accepted %d, done %d, failed %d (all with a failing step: %d), lost %d",
		c.sent, c.accepted, c.done, c.failed, c.deliberate, c.lost)
	t.Logf("  submissions refused %d, sent again after no answer %d; status queries answered unknown after acceptance %d",
		c.refused, c.resent, c.unknown)
	t.Logf("  steps run %d; runs more than once %d, in %d requests (each overlapped a kill, or a stall: %d)",
		c.stepRuns, c.reruns, c.rerunReqs, excused)
	t.Logf("  step runs started after their request was seen ended: %d, in %v (TestDurableFinishedNotRunAgain)", c.afterEnd, c.afterEndReqs)
	t.Logf("  requests taken over by another planner (seen): %d; nodes killed: %v", c.takenOver, d.killed)
	t.Logf("  accepted to seen ended: p50 %v p99 %v max %v", pct(0.5), pct(0.99), pct(1))
	fl.log()
	stalls.log(t, excused)
}
