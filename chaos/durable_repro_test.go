package chaos_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/mpreg/mpreg/bus"
	"github.com/mpreg/mpreg/durable"
	"github.com/mpreg/mpreg/internal/testcluster"
	"github.com/mpreg/mpreg/node"
	"github.com/mpreg/mpreg/schema"
)

// TestDurableFinishedNotRunAgain: a request that finished, whose record is
// still in the store (its outcome recorded, but its planner died, or its
// clean-up failed, before the record went), must not run again when a
// node takes it over: the takeover finds the outcome, answers it, and
// cleans up. (A takeover that ran such a request again found the outcome
// recorded only at its end, left the record and let the lease go, which
// started the next takeover, again and again.)
func TestDurableFinishedNotRunAgain(t *testing.T) {
	url := testcluster.Server(t, testcluster.WithJetStream(t.TempDir())).ClientURL()
	var calls atomic.Int64
	entered, release := make(chan struct{}), make(chan struct{})
	n := testcluster.Node(t, url, testcluster.NodeConfig(t, "n1"), func(n *node.Node) {
		require.NoError(t, n.Register("gate", func(ctx context.Context, x string) (string, error) {
			if calls.Add(1) == 1 {
				close(entered)
				select {
				case <-release:
				case <-ctx.Done():
				}
			}
			return x, nil
		}, node.WithParams("x")))
	})
	<-n.JetStreamKnown()
	nc := testcluster.Conn(t, url)
	subj := bus.NewSubjects("", bus.DefaultCluster)
	ctx, cancel := context.WithTimeout(context.Background(), testcluster.Timeout)
	defer cancel()
	req := &schema.Request{ID: "again-1", Cmds: []schema.Command{{Name: "a", Fun: "gate", Args: []any{"x"}}},
		Durability: schema.Durability{Durable: true, Submit: true}}
	st, err := send(ctx, nc, subj.RPC(), req, testcluster.Timeout)
	require.NoError(t, err)
	require.Nil(t, st.Error)
	<-entered

	js, err := jetstream.New(nc)
	require.NoError(t, err)
	kv, err := js.KeyValue(ctx, durable.RequestsBucket("", bus.DefaultCluster))
	require.NoError(t, err)
	key := durable.Key("", req.ID)
	rec, err := kv.Get(ctx, "r."+key)
	require.NoError(t, err, "the running request's record")
	close(release)
	st, err = send(ctx, nc, subj.Status(), schema.StatusRequest{ID: req.ID, WaitMS: 5000}, testcluster.Timeout)
	require.NoError(t, err)
	require.Equal(t, schema.StatusDone, st.Status, "%+v", st)
	require.Equal(t, int64(1), calls.Load())

	// The record as a Finish whose purge of it did not take effect leaves
	// it, then the lease let go (as run's deferred release does).
	_, err = kv.Put(ctx, "r."+key, rec.Value())
	require.NoError(t, err)
	store, err := durable.Open(ctx, js, durable.Options{Cluster: bus.DefaultCluster})
	require.NoError(t, err)
	var letGo atomic.Int64 // the lease of the request deleted or lapsed
	stopWatch, err := store.WatchLapses(ctx, func(k string) {
		if k == key {
			letGo.Add(1)
		}
	})
	require.NoError(t, err)
	defer stopWatch()
	var lease *durable.Lease
	testcluster.WaitFor(t, "the finished request's lease to lapse", func() error {
		lease, err = store.Acquire(ctx, key, "n0/x")
		return err
	})
	require.NoError(t, lease.Release(ctx))

	// Right: the record goes (the sweep removes a record that has a
	// Final) and the function does not run again.
	testcluster.WaitFor(t, "the finished request's record to go, or the request to run again", func() error {
		if c := calls.Load(); c > 1 {
			t.Fatalf("the finished request ran again: gate called %d times; %s", c, takeovers(&letGo))
		}
		if _, err := kv.Get(ctx, "r."+key); !errors.Is(err, jetstream.ErrKeyNotFound) {
			return fmt.Errorf("record still there (%w)", err)
		}
		return nil
	})
	st, err = send(ctx, nc, subj.Status(), schema.StatusRequest{ID: req.ID}, time.Second)
	require.NoError(t, err)
	require.Equal(t, schema.StatusDone, st.Status)
}

// TestDurableReadsOwnWrites: on a bucket kept by three servers, a record
// the store has just created must read back. With direct gets (which
// nats.go turns on for every bucket it creates) any replica answers a
// read, a follower that has not applied the create yet included: a
// request accepted a moment before read as missing, 1 to 12 times in 200
// tries, and the node failed it with INTERNAL. durable.Open makes a
// replicated bucket's reads go to its leader.
func TestDurableReadsOwnWrites(t *testing.T) {
	servers := testcluster.JetStreamCluster(t, 3)
	js, err := jetstream.New(testcluster.Conn(t, servers[0].ClientURL()))
	require.NoError(t, err)
	var store *durable.Store
	testcluster.WaitFor(t, "the durable buckets", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		store, err = durable.Open(ctx, js, durable.Options{Cluster: bus.DefaultCluster, Replicas: 3})
		return err
	})
	const n = 300 // a miss came once in some tens to hundreds
	for i := range n {
		rec := &durable.Record{ID: fmt.Sprintf("rw-%d", i), Steps: 1}
		actx, acancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, _, err := store.Accept(actx, rec)
		require.NoError(t, err)
		_, err = store.Steps(actx, durable.Key("", rec.ID))
		acancel()
		require.NoError(t, err, "the record of %s, created just before (after %d that read back)", rec.ID, i)
	}
}

// takeovers measures, after a finished request ran again, whether its
// takeover repeats: each run ends by finding the outcome recorded, leaves
// the record and lets the lease go, which starts the next takeover.
func takeovers(letGo *atomic.Int64) string {
	from, start := letGo.Load(), time.Now()
	tk := time.NewTicker(10 * time.Millisecond)
	defer tk.Stop()
	for range tk.C {
		if n := letGo.Load() - from; n >= 100 || time.Since(start) > 3*time.Second {
			return fmt.Sprintf("its lease was then let go %d more times in %v", n, time.Since(start).Round(time.Millisecond))
		}
	}
	return ""
}
