package durable

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mpreg/mpreg/bus"
)

// Defaults and bounds of Options and of the calls.
const (
	// DefaultLeaseTTL is a lease's life without renewal. Leases may be
	// 1 s to 3 s.
	DefaultLeaseTTL = 3 * time.Second
	minLeaseTTL     = time.Second
	maxLeaseTTL     = 3 * time.Second
	// DefaultTimeout bounds a call whose ctx has no deadline, so that no
	// call waits forever on a JetStream that does not answer.
	DefaultTimeout = 5 * time.Second
	// MaxSteps bounds the steps Steps returns (ErrTooMany beyond).
	MaxSteps = 1 << 16
	// MaxScan bounds the keys Orphans reads from either bucket.
	MaxScan = 1 << 20
	// MinResultTTL is the shortest TTL Finish takes: JetStream's
	// per-message TTLs count in seconds.
	MinResultTTL = time.Second
	// markerTTL is how long the requests bucket keeps the marker left by a
	// Final that expired, and leaseMarkerTTL how long the leases bucket
	// keeps the marker of a lapsed lease (long enough for a watcher that
	// reconnects to see it).
	markerTTL      = time.Second
	leaseMarkerTTL = time.Minute
)

// Options say which buckets a Store uses and how.
type Options struct {
	// Prefix and Cluster name the buckets (bus.BucketName with suffixes
	// "requests" and "leases"). Prefix "" means bus.DefaultPrefix;
	// Cluster is required.
	Prefix, Cluster string
	// LeaseTTL is the leases bucket's TTL, 1 s to 3 s. Default
	// DefaultLeaseTTL. A bucket that exists keeps the TTL it was created
	// with, and the Store uses that one (see Store.LeaseTTL).
	LeaseTTL time.Duration
	// Replicas is how many servers of a JetStream cluster keep each
	// bucket, 1 to 5. Default 1.
	Replicas int
}

// Store keeps a cluster's durable requests in two JetStream key-value
// buckets (see the package doc). Its methods are safe for concurrent use;
// it owns no goroutine but those of its Leases and WatchLapses, each
// stopped by its owner.
type Store struct {
	requests, leases jetstream.KeyValue
	// reqStream is the requests bucket's stream, for purges by subject
	// and per-subject counts.
	reqStream jetstream.Stream
	// reqPre is the subject prefix of the requests bucket's keys.
	reqPre   string
	leaseTTL time.Duration
}

// RequestsBucket and LeasesBucket name the buckets of cluster under
// prefix.
func RequestsBucket(prefix, cluster string) string {
	return bus.BucketName(prefix, cluster, "requests")
}

// LeasesBucket names the leases bucket of cluster under prefix.
func LeasesBucket(prefix, cluster string) string {
	return bus.BucketName(prefix, cluster, "leases")
}

// check validates o and fills its defaults.
func (o *Options) check() error {
	if o.Cluster == "" {
		return fmt.Errorf("%w: durable store: cluster id empty", ErrInvalid)
	}
	if o.LeaseTTL == 0 {
		o.LeaseTTL = DefaultLeaseTTL
	}
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	if o.LeaseTTL < minLeaseTTL || o.LeaseTTL > maxLeaseTTL {
		return fmt.Errorf("%w: durable store: lease TTL %s (1s to 3s)", ErrInvalid, o.LeaseTTL)
	}
	if o.Replicas < 1 || o.Replicas > 5 {
		return fmt.Errorf("%w: durable store: %d replicas (1 to 5)", ErrInvalid, o.Replicas)
	}
	return nil
}

// Open opens the cluster's buckets, creating them in file storage when
// they do not exist; when several nodes open them at once, one creates
// and the others bind. A bucket that exists is used as it is (TTL and
// replicas stay), but it must allow per-key TTLs and limit markers, or
// Open fails with ErrInvalid.
func Open(ctx context.Context, js jetstream.JetStream, o Options) (*Store, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	ctx, cancel := bounded(ctx)
	defer cancel()
	req, err := openKV(ctx, js, jetstream.KeyValueConfig{
		Bucket: RequestsBucket(o.Prefix, o.Cluster), Description: "MPREG durable requests (docs/PROTOCOL.md)",
		Storage: jetstream.FileStorage, Replicas: o.Replicas, LimitMarkerTTL: markerTTL,
	})
	if err != nil {
		return nil, err
	}
	leases, err := openKV(ctx, js, jetstream.KeyValueConfig{
		Bucket: LeasesBucket(o.Prefix, o.Cluster), Description: "MPREG leases of durable requests (docs/PROTOCOL.md)",
		Storage: jetstream.FileStorage, Replicas: o.Replicas, TTL: o.LeaseTTL, LimitMarkerTTL: leaseMarkerTTL,
	})
	if err != nil {
		return nil, err
	}
	stream, err := js.Stream(ctx, "KV_"+req.Bucket())
	if err != nil {
		return nil, wrap("requests bucket stream", err)
	}
	cfg := stream.CachedInfo().Config
	if !cfg.AllowMsgTTL {
		return nil, fmt.Errorf("%w: bucket %s exists without per-key TTLs", ErrInvalid, req.Bucket())
	}
	st, err := leases.Status(ctx)
	if err != nil {
		return nil, wrap("leases bucket status", err)
	}
	ttl := st.TTL()
	if st.LimitMarkerTTL() <= 0 || ttl < minLeaseTTL || ttl > maxLeaseTTL {
		return nil, fmt.Errorf("%w: bucket %s exists with TTL %s and marker TTL %s (want 1s to 3s, markers on)",
			ErrInvalid, leases.Bucket(), ttl, st.LimitMarkerTTL())
	}
	return &Store{requests: req, leases: leases, reqStream: stream,
		reqPre: "$KV." + req.Bucket() + ".", leaseTTL: ttl}, nil
}

// openKV opens the bucket cfg names, creating it with cfg when it does not
// exist.
func openKV(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	for range 2 { // a second try when another node created it meanwhile
		kv, err := js.KeyValue(ctx, cfg.Bucket)
		if !errors.Is(err, jetstream.ErrBucketNotFound) {
			if err != nil {
				return nil, wrap("bucket "+cfg.Bucket, err)
			}
			return leaderReads(ctx, js, kv)
		}
		kv, err = js.CreateKeyValue(ctx, cfg)
		if !errors.Is(err, jetstream.ErrBucketExists) {
			if err != nil {
				return nil, wrap("creating bucket "+cfg.Bucket, err)
			}
			return leaderReads(ctx, js, kv)
		}
	}
	return nil, fmt.Errorf("durable: bucket %s: created and removed while opening it", cfg.Bucket)
}

// leaderReads makes the reads of a replicated bucket go to its stream's
// leader: with direct gets (which nats.go turns on for every bucket it
// creates) any replica answers a read, a follower that has not applied
// the latest write included, and a record just created could read as
// missing, a step recorded as not run, a finished request as not
// finished. A bucket of one replica keeps its direct gets, which cost
// less. It returns the bucket bound again when its config changed.
func leaderReads(ctx context.Context, js jetstream.JetStream, kv jetstream.KeyValue) (jetstream.KeyValue, error) {
	stream, err := js.Stream(ctx, "KV_"+kv.Bucket())
	if err != nil {
		return nil, wrap("bucket "+kv.Bucket()+" stream", err)
	}
	cfg := stream.CachedInfo().Config
	if cfg.Replicas <= 1 || !cfg.AllowDirect {
		return kv, nil
	}
	cfg.AllowDirect, cfg.MirrorDirect = false, false
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		return nil, wrap("bucket "+kv.Bucket()+": reads from its leader", err)
	}
	kv, err = js.KeyValue(ctx, kv.Bucket())
	return kv, wrap("bucket "+kv.Bucket(), err)
}

// LeaseTTL is the leases bucket's TTL: how long a lease lives without
// renewal.
func (s *Store) LeaseTTL() time.Duration { return s.leaseTTL }

// bounded gives ctx DefaultTimeout when it has no deadline.
func bounded(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, DefaultTimeout)
}

// jsClusterNotAvailable is nats-server's JSClusterNotAvailErr: JetStream
// is starting or has no meta leader (its HTTP-like code is 503, as are the
// other "temporarily unavailable" answers).
const jsClusterNotAvailable = 10008

// unavailable reports whether err means JetStream could not be reached or
// did not answer.
func unavailable(err error) bool {
	for _, e := range []error{context.DeadlineExceeded, nats.ErrTimeout, nats.ErrNoResponders,
		jetstream.ErrNoStreamResponse, nats.ErrConnectionClosed, jetstream.ErrConnectionClosed,
		nats.ErrConnectionDraining, nats.ErrDisconnected, jetstream.ErrServerShutdown,
		jetstream.ErrJetStreamNotEnabled, jetstream.ErrJetStreamNotEnabledForAccount, jetstream.ErrNoHeartbeat} {
		if errors.Is(err, e) {
			return true
		}
	}
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.Code == 503 || apiErr.ErrorCode == jsClusterNotAvailable)
}

// wrap names op in err, and adds ErrUnavailable when JetStream was not
// reached. nil stays nil.
func wrap(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case unavailable(err):
		return fmt.Errorf("%w: %s: %w", ErrUnavailable, op, err)
	default:
		return fmt.Errorf("durable: %s: %w", op, err)
	}
}

// keyExists reports whether err from a KV Create means the key exists: a
// wrong-last-sequence answer, also when Create lost a race on a deleted
// key (it returns that one unwrapped).
func keyExists(err error) bool {
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return true
	}
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// get reads key of kv: its value and revision, ErrNotFound when absent or
// deleted.
func get(ctx context.Context, kv jetstream.KeyValue, key string) ([]byte, uint64, error) {
	var e jetstream.KeyValueEntry
	err := riding(ctx, func() (err error) {
		e, err = kv.Get(ctx, key)
		return err
	})
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return nil, 0, fmt.Errorf("%w: %s", ErrNotFound, key)
	case err != nil:
		return nil, 0, wrap("get "+key, err)
	}
	return e.Value(), e.Revision(), nil
}

// checkKey refuses a key that is not one of Key's.
func checkKey(key string) error {
	if len(key) != 32 {
		return fmt.Errorf("%w: key %q is not a Key", ErrInvalid, clip(key))
	}
	for i := 0; i < len(key); i++ {
		if c := key[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return fmt.Errorf("%w: key %q is not a Key", ErrInvalid, clip(key))
		}
	}
	return nil
}

// clip cuts s for an error message.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// electing reports whether err is JetStream's answer while a replicated
// stream (or the cluster) elects its leader: "temporarily unavailable",
// or nobody to answer yet. The call did not take effect, and asking again
// a moment later does.
func electing(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode == jsClusterNotAvailable
	}
	return errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse)
}

// riding calls f, and again while it fails with electing, with a growing
// pause (25 ms to 250 ms), as long as ctx allows: a read or a create
// rides through the election of a bucket's leader (a server of the
// JetStream cluster stopped) instead of failing the request.
func riding(ctx context.Context, f func() error) error {
	pause := 25 * time.Millisecond
	for {
		err := f()
		if err == nil || !electing(err) {
			return err
		}
		t := time.NewTimer(pause)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return err
		}
		pause = min(2*pause, 250*time.Millisecond)
	}
}
