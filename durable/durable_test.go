package durable_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"
	"go.uber.org/goleak"

	"github.com/mpreg/mpreg/bus"
	"github.com/mpreg/mpreg/durable"
	"github.com/mpreg/mpreg/internal/testcluster"
	"github.com/mpreg/mpreg/internal/testwait"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// leaseTTL is the tests' lease TTL, the shortest allowed.
const leaseTTL = time.Second

// server starts a nats-server with JetStream storing in dir.
func server(t testing.TB, dir string, port int) *bus.Server {
	t.Helper()
	return testcluster.Server(t, testcluster.WithServerConfig(bus.ServerConfig{Host: "127.0.0.1", Port: port,
		JetStream: bus.JetStreamConfig{Enabled: true, StoreDir: dir}}))
}

// jsOf connects to url and returns its JetStream.
func jsOf(t testing.TB, url string, opts ...testcluster.ConnOption) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc := testcluster.Conn(t, url, opts...)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	return nc, js
}

// open opens the store of cluster "c1" through a connection of its own.
func open(t *testing.T, url string) *durable.Store {
	t.Helper()
	_, js := jsOf(t, url)
	s, err := durable.Open(testwait.Ctx(t), js, durable.Options{Cluster: "c1", LeaseTTL: leaseTTL})
	require.NoError(t, err)
	return s
}

// fixture is a JetStream server with a store on it.
func fixture(t *testing.T) (*bus.Server, *durable.Store) {
	t.Helper()
	srv := server(t, t.TempDir(), -1)
	return srv, open(t, srv.ClientURL())
}

// accept records a request of id for caller "alice" and returns its key.
func accept(t *testing.T, s *durable.Store, id string) string {
	t.Helper()
	ex, fin, err := s.Accept(testwait.Ctx(t), &durable.Record{ID: id, Caller: "alice", Sum: "sum-" + id,
		Body: []byte("body of " + id), Steps: 2, CreatedMS: time.Now().UnixMilli(), ResultTTLMS: 2000})
	require.NoError(t, err)
	require.Nil(t, ex)
	require.Nil(t, fin)
	return durable.Key("alice", id)
}

// release releases l at cleanup.
func release(t *testing.T, l *durable.Lease) {
	t.Cleanup(func() { _ = l.Release(context.Background()) })
}

// TestKey: 32 lowercase hex digits, distinct for distinct callers and
// ids, also where plain concatenation would collide.
func TestKey(t *testing.T) {
	k := durable.Key("alice", "r1")
	require.Regexp(t, `\A[0-9a-f]{32}\z`, k)
	require.Equal(t, k, durable.Key("alice", "r1"))
	require.NotEqual(t, durable.Key("ab", "c"), durable.Key("a", "bc"))
	require.NotEqual(t, k, durable.Key("bob", "r1"))
}

// TestOpen: options are checked, the buckets are created once and
// bound by every later Open (also concurrent ones), and a bucket made
// without per-key TTLs is refused.
func TestOpen(t *testing.T) {
	srv := server(t, t.TempDir(), -1)
	_, js := jsOf(t, srv.ClientURL())
	ctx := testwait.Ctx(t)
	for _, o := range []durable.Options{{}, {Cluster: "c", LeaseTTL: 500 * time.Millisecond},
		{Cluster: "c", LeaseTTL: 4 * time.Second}, {Cluster: "c", Replicas: 6}} {
		_, err := durable.Open(ctx, js, o)
		require.ErrorIs(t, err, durable.ErrInvalid, "%+v", o)
	}
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() {
			_, errs[i] = durable.Open(ctx, js, durable.Options{Cluster: "c1", LeaseTTL: 2 * time.Second})
		})
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	s, err := durable.Open(ctx, js, durable.Options{Cluster: "c1", LeaseTTL: 3 * time.Second})
	require.NoError(t, err)
	require.Equal(t, 2*time.Second, s.LeaseTTL(), "an existing bucket keeps its TTL")
	kv, err := js.KeyValue(ctx, durable.LeasesBucket("", "c1"))
	require.NoError(t, err)
	st, err := kv.Status(ctx)
	require.NoError(t, err)
	require.Positive(t, st.LimitMarkerTTL())

	_, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: durable.RequestsBucket("", "plain")})
	require.NoError(t, err)
	_, err = durable.Open(ctx, js, durable.Options{Cluster: "plain"})
	require.ErrorIs(t, err, durable.ErrInvalid)
}

// TestLeaseLapse: a lease nobody renews lapses at the server, which
// leaves a marker (Nats-Marker-Reason: MaxAge) that a KV watch sees as a
// purge, and WatchLapses reports the key. It prints how long after the
// TTL the lapse is seen, for the shortest and the longest TTL.
func TestLeaseLapse(t *testing.T) {
	srv := server(t, t.TempDir(), -1)
	for _, c := range []struct {
		ttl    time.Duration
		rounds int
	}{{time.Second, 5}, {3 * time.Second, 2}} {
		t.Run(c.ttl.String(), func(t *testing.T) { lapses(t, srv.ClientURL(), c.ttl, c.rounds) })
	}
}

// lapses lets rounds leases of a store with ttl lapse, one after another.
func lapses(t *testing.T, url string, ttl time.Duration, rounds int) {
	ctx := testwait.Ctx(t)
	_, js := jsOf(t, url)
	cluster := "lapse-" + ttl.String()
	s, err := durable.Open(ctx, js, durable.Options{Cluster: cluster, LeaseTTL: ttl})
	require.NoError(t, err)
	kv, err := js.KeyValue(ctx, durable.LeasesBucket("", cluster))
	require.NoError(t, err)
	stream, err := js.Stream(ctx, "KV_"+kv.Bucket())
	require.NoError(t, err)
	seen := make(chan string, 16)
	stop, err := s.WatchLapses(ctx, func(key string) { seen <- key })
	require.NoError(t, err)
	defer stop()

	var worst time.Duration
	for i := range rounds {
		key := durable.Key("alice", fmt.Sprint("lapse-", i))
		// A holder that died at once: its lease is written and never renewed.
		_, err := kv.Create(ctx, "l."+key, []byte("dead"))
		require.NoError(t, err)
		e, err := kv.Get(ctx, "l."+key)
		require.NoError(t, err)
		require.Equal(t, key, testwait.Recv(t, seen, "lapse of "+key))
		late := time.Since(e.Created().Add(ttl))
		worst = max(worst, late)
		t.Logf("lease %d: TTL %s, lapse seen %s after it", i, ttl, late.Round(time.Millisecond))

		// What the subject holds now is the server's marker.
		cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
			FilterSubjects: []string{"$KV." + kv.Bucket() + ".l." + key}, DeliverPolicy: jetstream.DeliverLastPerSubjectPolicy})
		require.NoError(t, err)
		marker, err := cons.Next(jetstream.FetchMaxWait(time.Second))
		require.NoError(t, err)
		require.Equal(t, "MaxAge", marker.Headers().Get(jetstream.MarkerReasonHeader))
		require.Empty(t, marker.Data())
		holder, err := s.Holder(ctx, key)
		require.NoError(t, err)
		require.Empty(t, holder, "a lapsed lease has no holder")
	}
	require.Less(t, worst, time.Second, "a lapse is seen within a second of the TTL")
}

// TestLease: one holder at a time; renewal keeps a lease well past its
// TTL; Release frees it (and WatchLapses reports it); a holder whose
// connection dies loses it, and another acquires it within TTL+1s.
func TestLease(t *testing.T) {
	srv, s := fixture(t)
	ctx := testwait.Ctx(t)
	key := durable.Key("alice", "lease")
	_, err := s.Acquire(ctx, "not a key", "n1")
	require.ErrorIs(t, err, durable.ErrInvalid)

	l, err := s.Acquire(ctx, key, "n1")
	require.NoError(t, err)
	release(t, l)
	_, err = s.Acquire(ctx, key, "n2")
	var leased *durable.LeasedError
	require.ErrorAs(t, err, &leased)
	require.ErrorIs(t, err, durable.ErrLeased)
	require.Equal(t, "n1", leased.Holder)

	renewed := time.Now().Add(3 * leaseTTL)
	testwait.For(t, "three TTLs", func() error {
		if time.Now().Before(renewed) {
			return errors.New("not yet")
		}
		return nil
	})
	holder, err := s.Holder(ctx, key)
	require.NoError(t, err)
	require.Equal(t, "n1", holder, "renewed past its TTL")
	select {
	case <-l.Lost():
		t.Fatal("a renewed lease was lost")
	default:
	}

	seen := make(chan string, 4)
	stop, err := s.WatchLapses(ctx, func(key string) { seen <- key })
	require.NoError(t, err)
	defer stop()
	require.NoError(t, l.Release(ctx))
	require.NoError(t, l.Release(ctx), "Release again")
	require.Equal(t, key, testwait.Recv(t, seen, "release seen as a lapse"))
	holder, err = s.Holder(ctx, key)
	require.NoError(t, err)
	require.Empty(t, holder)

	// A holder whose process stops: its connection closes, it renews no more.
	nc, js := jsOf(t, srv.ClientURL())
	dying, err := durable.Open(ctx, js, durable.Options{Cluster: "c1"})
	require.NoError(t, err)
	l1, err := dying.Acquire(ctx, key, "dying")
	require.NoError(t, err)
	release(t, l1)
	died := time.Now()
	nc.Close()
	var l2 *durable.Lease
	testwait.For(t, "the lease of a dead holder", func() error {
		l2, err = s.Acquire(ctx, key, "n2")
		return err
	})
	release(t, l2)
	took := time.Since(died)
	t.Logf("lease taken over %s after its holder died (TTL %s)", took.Round(time.Millisecond), leaseTTL)
	require.Less(t, took, leaseTTL+time.Second)
	testwait.Recv(t, l1.Lost(), "the dead holder's Lost")
}

// TestLeaseLost: Lost closes when another holder has the key.
func TestLeaseLost(t *testing.T) {
	srv, s := fixture(t)
	ctx := testwait.Ctx(t)
	key := durable.Key("alice", "lost")
	l, err := s.Acquire(ctx, key, "n1")
	require.NoError(t, err)
	release(t, l)
	_, js := jsOf(t, srv.ClientURL())
	kv, err := js.KeyValue(ctx, durable.LeasesBucket("", "c1"))
	require.NoError(t, err)
	e, err := kv.Get(ctx, "l."+key)
	require.NoError(t, err)
	_, err = kv.Update(ctx, "l."+key, []byte("thief"), e.Revision())
	require.NoError(t, err)
	testwait.Recv(t, l.Lost(), "Lost after the key was taken")
	require.NoError(t, l.Release(ctx))
	holder, err := s.Holder(ctx, key)
	require.NoError(t, err)
	require.Equal(t, "thief", holder, "Release leaves another's lease alone")
}

// TestAcceptOnce: of 8 concurrent Accepts of one key exactly one records
// it; the others get the record. Finish then Final; an Accept after the
// Finish gets the Final and records nothing.
func TestAcceptOnce(t *testing.T) {
	_, s := fixture(t)
	ctx := testwait.Ctx(t)
	var wg sync.WaitGroup
	var mu sync.Mutex
	news, existing := 0, 0
	for i := range 8 {
		wg.Go(func() {
			ex, fin, err := s.Accept(ctx, &durable.Record{ID: "once", Caller: "alice", Sum: fmt.Sprint("sum", i)})
			mu.Lock()
			defer mu.Unlock()
			require.NoError(t, err)
			require.Nil(t, fin)
			if ex == nil {
				news++
				return
			}
			existing++
			require.Equal(t, "once", ex.ID)
			require.Equal(t, durable.Version, ex.V)
		})
	}
	wg.Wait()
	require.Equal(t, 1, news)
	require.Equal(t, 7, existing)
	key := durable.Key("alice", "once")
	rec, err := s.Record(ctx, key)
	require.NoError(t, err)
	require.Equal(t, "alice", rec.Caller)

	_, err = s.Final(ctx, key)
	require.ErrorIs(t, err, durable.ErrNotFound)
	fin := &durable.Final{ID: "once", Caller: "alice", Sum: rec.Sum, Status: durable.StatusDone,
		Response: []byte("42"), Planner: "n1", Steps: 2, StepsDone: 2, FinishedMS: time.Now().UnixMilli()}
	got, err := s.Finish(ctx, key, fin, time.Minute)
	require.NoError(t, err)
	require.Equal(t, durable.Version, got.V)
	again, err := s.Finish(ctx, key, &durable.Final{ID: "once", Status: durable.StatusFailed}, time.Minute)
	require.ErrorIs(t, err, durable.ErrFinished)
	require.Equal(t, []byte("42"), again.Response, "the first Final stands")
	stored, err := s.Final(ctx, key)
	require.NoError(t, err)
	require.Equal(t, got, stored)
	_, err = s.Record(ctx, key)
	require.ErrorIs(t, err, durable.ErrNotFound, "Finish removes the record")

	ex, final, err := s.Accept(ctx, &durable.Record{ID: "once", Caller: "alice"})
	require.NoError(t, err)
	require.Nil(t, ex)
	require.Equal(t, []byte("42"), final.Response)
	_, err = s.Record(ctx, key)
	require.ErrorIs(t, err, durable.ErrNotFound, "an Accept after the finish leaves no record")
	w, err := s.WaitFinal(ctx, key)
	require.NoError(t, err)
	require.Equal(t, stored, w)
}

// TestSteps: concurrent RecordSteps of one step all get the first value;
// Steps and CountSteps list them; Finish removes them; a new run of the
// same id (after the Final expired) starts with no steps and no cancel.
func TestSteps(t *testing.T) {
	_, s := fixture(t)
	ctx := testwait.Ctx(t)
	key := accept(t, s, "steps")
	var wg sync.WaitGroup
	got := make([][]byte, 8)
	for i := range got {
		wg.Go(func() {
			var err error
			got[i], err = s.RecordStep(ctx, key, "|a", []byte(fmt.Sprint("value ", i)))
			require.NoError(t, err)
		})
	}
	wg.Wait()
	for _, g := range got {
		require.Equal(t, got[0], g)
	}
	b, err := s.RecordStep(ctx, key, "|b", nil)
	require.NoError(t, err)
	require.Empty(t, b)
	steps, err := s.Steps(ctx, key)
	require.NoError(t, err)
	require.Equal(t, map[string][]byte{"|a": got[0], "|b": nil}, steps)
	n, err := s.CountSteps(ctx, key)
	require.NoError(t, err)
	require.Equal(t, 2, n)

	cancelled, err := s.Cancelled(ctx, key)
	require.NoError(t, err)
	require.False(t, cancelled)
	require.NoError(t, s.Cancel(ctx, key))
	require.NoError(t, s.Cancel(ctx, key), "cancel twice")
	cancelled, err = s.Cancelled(ctx, key)
	require.NoError(t, err)
	require.True(t, cancelled)
	require.ErrorIs(t, s.Cancel(ctx, durable.Key("alice", "nothing")), durable.ErrNotFound)

	_, err = s.Finish(ctx, key, &durable.Final{ID: "steps", Status: durable.StatusCancelled}, time.Second)
	require.NoError(t, err)
	require.ErrorIs(t, s.Cancel(ctx, key), durable.ErrFinished)
	n, err = s.CountSteps(ctx, key)
	require.NoError(t, err)
	require.Zero(t, n)
	_, err = s.Steps(ctx, key)
	require.ErrorIs(t, err, durable.ErrNotFound)

	testwait.For(t, "the final's TTL", func() error {
		_, err := s.Final(ctx, key)
		if errors.Is(err, durable.ErrNotFound) {
			return nil
		}
		return fmt.Errorf("final still there (%w)", err)
	})
	// A planner that lost its lease records a step after the finish.
	_, err = s.RecordStep(ctx, key, "|a", []byte("stale"))
	require.NoError(t, err)
	require.Equal(t, key, accept(t, s, "steps"), "the id runs anew")
	n, err = s.CountSteps(ctx, key)
	require.NoError(t, err)
	require.Zero(t, n, "a step older than the record is not the new run's")
	b, err = s.RecordStep(ctx, key, "|a", []byte("fresh"))
	require.NoError(t, err)
	require.Equal(t, []byte("fresh"), b)
	cancelled, err = s.Cancelled(ctx, key)
	require.NoError(t, err)
	require.False(t, cancelled)
}

// TestFinalTTL: a Final goes when its TTL passed, and WaitFinal wakes up
// when it is written.
func TestFinalTTL(t *testing.T) {
	_, s := fixture(t)
	ctx := testwait.Ctx(t)
	key := accept(t, s, "ttl")
	_, err := s.Finish(ctx, key, &durable.Final{ID: "ttl"}, 500*time.Millisecond)
	require.ErrorIs(t, err, durable.ErrInvalid)

	waited := make(chan *durable.Final, 1)
	go func() {
		f, err := s.WaitFinal(ctx, key)
		if err != nil {
			t.Error(err)
		}
		waited <- f
	}()
	wctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	_, err = s.WaitFinal(wctx, durable.Key("alice", "never"))
	require.ErrorIs(t, err, context.DeadlineExceeded)

	written := time.Now()
	_, err = s.Finish(ctx, key, &durable.Final{ID: "ttl", Status: durable.StatusDone}, time.Second)
	require.NoError(t, err)
	require.Equal(t, durable.StatusDone, testwait.Recv(t, waited, "WaitFinal").Status)
	testwait.For(t, "the final's TTL", func() error {
		_, err := s.Final(ctx, key)
		if errors.Is(err, durable.ErrNotFound) {
			return nil
		}
		return fmt.Errorf("final still there (%w)", err)
	})
	t.Logf("final with a 1s TTL gone %s after it was written", time.Since(written).Round(time.Millisecond))
	require.GreaterOrEqual(t, time.Since(written), 900*time.Millisecond)
}

// TestOrphans: a request whose lease lapsed is an orphan; one with a
// lease is not; a record left over by a finished request is removed.
func TestOrphans(t *testing.T) {
	srv, s := fixture(t)
	ctx := testwait.Ctx(t)
	run, dead, done := accept(t, s, "running"), accept(t, s, "dead"), accept(t, s, "done")
	l, err := s.Acquire(ctx, run, "n1")
	require.NoError(t, err)
	release(t, l)
	_, js := jsOf(t, srv.ClientURL())
	leases, err := js.KeyValue(ctx, durable.LeasesBucket("", "c1"))
	require.NoError(t, err)
	_, err = leases.Create(ctx, "l."+dead, []byte("died"))
	require.NoError(t, err)
	// done's planner died after writing the Final, before removing the record.
	requests, err := js.KeyValue(ctx, durable.RequestsBucket("", "c1"))
	require.NoError(t, err)
	fin, err := msgpack.Marshal(&durable.Final{V: 1, ID: "done", Status: durable.StatusDone})
	require.NoError(t, err)
	_, err = requests.Create(ctx, "f."+done, fin)
	require.NoError(t, err)
	testwait.For(t, "the orphan", func() error {
		keys, err := s.Orphans(ctx, 10)
		if err != nil {
			return err
		}
		if len(keys) != 1 || keys[0] != dead {
			return fmt.Errorf("orphans %v", keys)
		}
		return nil
	})
	_, err = s.Record(ctx, done)
	require.ErrorIs(t, err, durable.ErrNotFound, "the record of a finished request is removed")
	none, err := s.Orphans(ctx, 0)
	require.NoError(t, err)
	require.Empty(t, none)
}

// TestRestart: a whole restart of the server on its store keeps records,
// steps and finals; the leases are gone, the running request is an
// orphan, and its old holder has lost its lease.
func TestRestart(t *testing.T) {
	dir, port := t.TempDir(), testcluster.FreePort(t)
	srv := server(t, dir, port)
	url := srv.ClientURL()
	s := open(t, url)
	ctx := testwait.Ctx(t)
	run, done := accept(t, s, "running"), accept(t, s, "done")
	l, err := s.Acquire(ctx, run, "n1")
	require.NoError(t, err)
	release(t, l)
	_, err = s.RecordStep(ctx, run, "|a", []byte("A"))
	require.NoError(t, err)
	require.NoError(t, s.Cancel(ctx, run))
	_, err = s.Finish(ctx, done, &durable.Final{ID: "done", Status: durable.StatusDone, Response: []byte("ok")}, time.Hour)
	require.NoError(t, err)

	srv.Shutdown()
	testwait.Recv(t, l.Lost(), "Lost while the server is down")
	srv = server(t, dir, port)
	s = open(t, srv.ClientURL())

	rec, err := s.Record(ctx, run)
	require.NoError(t, err)
	require.Equal(t, "running", rec.ID)
	steps, err := s.Steps(ctx, run)
	require.NoError(t, err)
	require.Equal(t, map[string][]byte{"|a": []byte("A")}, steps)
	cancelled, err := s.Cancelled(ctx, run)
	require.NoError(t, err)
	require.True(t, cancelled)
	fin, err := s.Final(ctx, done)
	require.NoError(t, err)
	require.Equal(t, []byte("ok"), fin.Response)
	testwait.For(t, "the orphan after the restart", func() error {
		holder, err := s.Holder(ctx, run)
		if err != nil || holder != "" {
			return fmt.Errorf("holder %q, %w", holder, err)
		}
		keys, err := s.Orphans(ctx, 10)
		if err != nil || len(keys) != 1 || keys[0] != run {
			return fmt.Errorf("orphans %v, %w", keys, err)
		}
		return nil
	})
	l2, err := s.Acquire(ctx, run, "n2")
	require.NoError(t, err)
	require.NoError(t, l2.Release(ctx))
}

// TestUnavailable: with the server gone every call ends with
// ErrUnavailable by its ctx's deadline, whether the connection waits to
// reconnect or is closed; a lease taken before is lost.
func TestUnavailable(t *testing.T) {
	srv, s := fixture(t)
	ctx := testwait.Ctx(t)
	key := accept(t, s, "gone")
	l, err := s.Acquire(ctx, key, "n1")
	require.NoError(t, err)
	release(t, l)
	nc, js := jsOf(t, srv.ClientURL())
	closed, err := durable.Open(ctx, js, durable.Options{Cluster: "c1"})
	require.NoError(t, err)
	nc.Close()
	srv.Shutdown()

	const deadline = 500 * time.Millisecond
	calls := map[string]func(context.Context, *durable.Store) error{
		"Accept": func(ctx context.Context, s *durable.Store) error {
			_, _, err := s.Accept(ctx, &durable.Record{ID: "new"})
			return err
		},
		"Record": func(ctx context.Context, s *durable.Store) error { _, err := s.Record(ctx, key); return err },
		"Final":  func(ctx context.Context, s *durable.Store) error { _, err := s.Final(ctx, key); return err },
		"Acquire": func(ctx context.Context, s *durable.Store) error {
			_, err := s.Acquire(ctx, durable.Key("a", "b"), "n2")
			return err
		},
		"Holder": func(ctx context.Context, s *durable.Store) error { _, err := s.Holder(ctx, key); return err },
		"RecordStep": func(ctx context.Context, s *durable.Store) error {
			_, err := s.RecordStep(ctx, key, "|a", nil)
			return err
		},
		"Steps":      func(ctx context.Context, s *durable.Store) error { _, err := s.Steps(ctx, key); return err },
		"CountSteps": func(ctx context.Context, s *durable.Store) error { _, err := s.CountSteps(ctx, key); return err },
		"Cancel":     func(ctx context.Context, s *durable.Store) error { return s.Cancel(ctx, key) },
		"Cancelled":  func(ctx context.Context, s *durable.Store) error { _, err := s.Cancelled(ctx, key); return err },
		"Finish": func(ctx context.Context, s *durable.Store) error {
			_, err := s.Finish(ctx, key, &durable.Final{}, time.Second)
			return err
		},
		"Orphans": func(ctx context.Context, s *durable.Store) error { _, err := s.Orphans(ctx, 1); return err },
		"WaitFinal": func(ctx context.Context, s *durable.Store) error {
			_, err := s.WaitFinal(ctx, key)
			return err
		},
		"WatchLapses": func(ctx context.Context, s *durable.Store) error {
			stop, err := s.WatchLapses(ctx, func(string) {})
			if err == nil {
				stop()
			}
			return err
		},
	}
	for _, store := range []struct {
		name string
		s    *durable.Store
	}{{"reconnecting", s}, {"closed", closed}} {
		for name, call := range calls {
			cctx, cancel := context.WithTimeout(ctx, deadline)
			start := time.Now()
			err := call(cctx, store.s)
			took := time.Since(start)
			cancel()
			require.ErrorIs(t, err, durable.ErrUnavailable, "%s %s", store.name, name)
			require.Less(t, took, deadline+300*time.Millisecond, "%s %s", store.name, name)
		}
	}
	_, err = durable.Open(ctx, js, durable.Options{Cluster: "c1"})
	require.ErrorIs(t, err, durable.ErrUnavailable)
	testwait.Recv(t, l.Lost(), "Lost")
}

// TestBadValues: a value that does not decode gives ErrCorrupt, one of a
// newer format ErrNewer, from every call that reads it, and nothing
// panics.
func TestBadValues(t *testing.T) {
	srv, s := fixture(t)
	ctx := testwait.Ctx(t)
	_, js := jsOf(t, srv.ClientURL())
	kv, err := js.KeyValue(ctx, durable.RequestsBucket("", "c1"))
	require.NoError(t, err)
	newer, err := msgpack.Marshal(map[string]any{"v": durable.Version + 1, "id": 7, "new": []int{1}})
	require.NoError(t, err)
	for _, c := range []struct {
		value []byte
		want  error
	}{{[]byte("\xc1garbage"), durable.ErrCorrupt}, {[]byte{0x81, 0xa1, 'v', 0x00}, durable.ErrCorrupt},
		{[]byte{0x82, 0xa1, 'v', 0x01, 0xa2, 'i', 'd', 0x05}, durable.ErrCorrupt}, {newer, durable.ErrNewer}} {
		key := durable.Key("alice", fmt.Sprintf("%x", c.value))
		_, err = kv.Put(ctx, "r."+key, c.value)
		require.NoError(t, err)
		_, err = kv.Put(ctx, "f."+key, c.value)
		require.NoError(t, err)
		_, err = kv.Put(ctx, "s."+key+"."+stepHash("|a"), c.value)
		require.NoError(t, err)

		_, err = s.Record(ctx, key)
		require.ErrorIs(t, err, c.want)
		_, err = s.Final(ctx, key)
		require.ErrorIs(t, err, c.want)
		_, err = s.WaitFinal(ctx, key)
		require.ErrorIs(t, err, c.want)
		_, _, err = s.Accept(ctx, &durable.Record{ID: fmt.Sprintf("%x", c.value), Caller: "alice"})
		require.ErrorIs(t, err, c.want)
		_, err = s.Steps(ctx, key)
		require.ErrorIs(t, err, c.want)
		_, err = s.RecordStep(ctx, key, "|a", []byte("x"))
		require.ErrorIs(t, err, c.want)
	}
	_, err = s.Record(ctx, "../r.x")
	require.ErrorIs(t, err, durable.ErrInvalid)
}

// stepHash is the documented hash of a step's name in its key.
func stepHash(step string) string {
	sum := sha256.Sum256([]byte(step))
	return hex.EncodeToString(sum[:16])
}

// A lease marked done (its request finished) has no holder and lapses
// without WatchLapses reporting it; a lease that dies beside it is
// reported.
func TestLeaseDone(t *testing.T) {
	srv := server(t, t.TempDir(), -1)
	ctx := testwait.Ctx(t)
	_, js := jsOf(t, srv.ClientURL())
	s, err := durable.Open(ctx, js, durable.Options{Cluster: "done", LeaseTTL: time.Second})
	require.NoError(t, err)
	seen := make(chan string, 16)
	stop, err := s.WatchLapses(ctx, func(key string) { seen <- key })
	require.NoError(t, err)
	defer stop()
	finished, dead := durable.Key("", "finished"), durable.Key("", "dead")
	l, err := s.Acquire(ctx, finished, "n1/a")
	require.NoError(t, err)
	require.NoError(t, l.Done(ctx))
	holder, err := s.Holder(ctx, finished)
	require.NoError(t, err)
	require.Empty(t, holder, "a lease marked done has no holder")
	require.NoError(t, l.Release(ctx), "Release after Done returns Done's result")
	// Acquired after the done one, so that it lapses after it: the
	// first lapse reported is this one, not the finished request's.
	kv, err := js.KeyValue(ctx, durable.LeasesBucket("", "done"))
	require.NoError(t, err)
	_, err = kv.Create(ctx, "l."+dead, []byte("n2/b")) // a holder that died at once
	require.NoError(t, err)
	require.Equal(t, dead, testwait.Recv(t, seen, "lapse of the dead lease"), "a done lease's lapse is not reported")
}
