package bus

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ErrNoJetStream wraps ProbeJetStream's error when JetStream does not
// serve the connection's account.
var ErrNoJetStream = errors.New("bus: JetStream not available")

// ErrJetStreamSilent wraps ProbeJetStream's error when no JetStream server
// answered in time, or a JetStream cluster said it is not available yet
// (it answers only once it has elected a meta leader, a moment after its
// servers start): asking again later may find it.
var ErrJetStreamSilent = errors.New("bus: no answer from the JetStream API")

// jsClusterNotAvailable is nats-server's JSClusterNotAvailErr: a
// JetStream cluster without a meta leader.
const jsClusterNotAvailable = 10008

// ProbeJetStream asks once, with the JetStream API's account info, whether
// JetStream serves nc's account, waiting no longer than ctx allows. It
// returns the account's info, or an error that wraps ErrNoJetStream when
// JetStream is not there (no server answers "no responders", or JetStream
// is off for the server or the account), or ErrJetStreamSilent when
// ctx's deadline passed first or the JetStream cluster has no leader yet.
// Any other error, ctx cancelled included, is returned as it is.
func ProbeJetStream(ctx context.Context, nc *nats.Conn) (*jetstream.AccountInfo, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("bus: jetstream: %w", err)
	}
	info, err := js.AccountInfo(ctx)
	var apiErr *jetstream.APIError
	switch {
	case err == nil:
		return info, nil
	case errors.Is(err, jetstream.ErrJetStreamNotEnabled), errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount),
		errors.Is(err, nats.ErrNoResponders):
		return nil, fmt.Errorf("%w: %w", ErrNoJetStream, err)
	case errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil,
		errors.As(err, &apiErr) && apiErr.ErrorCode == jsClusterNotAvailable:
		return nil, fmt.Errorf("%w: %w", ErrJetStreamSilent, err)
	default:
		return nil, fmt.Errorf("bus: JetStream account info: %w", err)
	}
}

// Object bucket defaults.
const (
	// DefaultObjectTTL is an object bucket's max age: a backstop that
	// removes what a crashed planner left behind.
	DefaultObjectTTL = time.Hour
	// MaxBucketName is the longest bucket name BucketName returns:
	// JetStream's 255-byte stream names less the object store's "OBJ_"
	// (a key-value bucket's "KV_" is shorter).
	MaxBucketName = 251
)

// ObjectBucket is the name of the JetStream object store bucket of cluster
// under prefix ("" means DefaultPrefix): BucketName(prefix, cluster, "").
func ObjectBucket(prefix, cluster string) string {
	return BucketName(prefix, cluster, "")
}

// BucketName is the name of a JetStream bucket (object store or key-value)
// of cluster under prefix ("" means DefaultPrefix), with suffix telling
// apart a cluster's buckets of one kind ("" for none). Bucket names allow
// only A-Z a-z 0-9 '_' and '-', so the name is the prefix with every byte
// outside A-Z a-z 0-9 written as '_' and two upper-case hex digits
// ("acme.mpreg" is "acme_2Empreg"), a '-', and the cluster id with every
// byte outside A-Z a-z 0-9 '_' '-' written the same way, so that any pair
// gives a valid name (a cluster id that schema.CheckID accepts has no such
// byte and stays as it is); then, when suffix is not "", a '-' and the
// suffix escaped as the prefix is. The escaped prefix and suffix hold no
// '-', so distinct prefixes, valid cluster ids and non-empty suffixes give
// distinct names: "mpreg", "default", "leases" is "mpreg-default-leases".
// The name without a suffix ("mpreg-default") is the object store's; it
// can equal a suffixed name of another cluster ("default" with "leases"
// and "default-leases" without), which is harmless only because object
// stores and key-value buckets live in streams named apart ("OBJ_",
// "KV_"): give every bucket of one kind a non-empty suffix. A name longer
// than MaxBucketName keeps its first 234 bytes, then '_' and the first 16
// hex digits of the SHA-256 of the whole name.
func BucketName(prefix, cluster, suffix string) string {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	var b strings.Builder
	escapeName(&b, prefix, "")
	b.WriteByte('-')
	escapeName(&b, cluster, "_-")
	if suffix != "" {
		b.WriteByte('-')
		escapeName(&b, suffix, "")
	}
	name := b.String()
	if len(name) <= MaxBucketName {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	return name[:MaxBucketName-17] + "_" + hex.EncodeToString(sum[:8])
}

// escapeName writes s to b, each byte outside A-Z a-z 0-9 and keep as '_'
// and two upper-case hex digits.
func escapeName(b *strings.Builder, s, keep string) {
	const digits = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || strings.IndexByte(keep, c) >= 0 {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('_')
		b.WriteByte(digits[c>>4])
		b.WriteByte(digits[c&0xF])
	}
}

// ObjectsConfig describes a cluster's object bucket.
type ObjectsConfig struct {
	// Prefix and Cluster name the bucket (ObjectBucket). Prefix "" means
	// DefaultPrefix; Cluster is required.
	Prefix, Cluster string
	// TTL is the objects' max age. Default DefaultObjectTTL; at least 1 s.
	TTL time.Duration
	// Replicas is how many servers of a JetStream cluster keep each
	// object, 1 to 5. Default 1.
	Replicas int
}

// OpenObjects opens the cluster's object bucket, creating it, in file
// storage, when it does not exist. A bucket that exists is opened as it
// is: the TTL and replicas it was created with stay (see its Status), so
// nodes that start with other settings do not rewrite it in turn.
func OpenObjects(ctx context.Context, js jetstream.JetStream, cfg ObjectsConfig) (jetstream.ObjectStore, error) {
	if cfg.Cluster == "" {
		return nil, fmt.Errorf("%w: object bucket: cluster id empty", ErrInvalidConfig)
	}
	if cfg.TTL == 0 {
		cfg.TTL = DefaultObjectTTL
	}
	if cfg.Replicas == 0 {
		cfg.Replicas = 1
	}
	if cfg.TTL < time.Second {
		return nil, fmt.Errorf("%w: object bucket: TTL %s below 1s", ErrInvalidConfig, cfg.TTL)
	}
	if cfg.Replicas < 1 || cfg.Replicas > 5 {
		return nil, fmt.Errorf("%w: object bucket: %d replicas (1 to 5)", ErrInvalidConfig, cfg.Replicas)
	}
	name := ObjectBucket(cfg.Prefix, cfg.Cluster)
	for range 2 { // a second try when another node created it meanwhile
		store, err := js.ObjectStore(ctx, name)
		if !errors.Is(err, jetstream.ErrBucketNotFound) {
			return wrapBucket(name, store, err)
		}
		store, err = js.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{
			Bucket: name, Description: "MPREG values passed by reference (docs/PROTOCOL.md)",
			TTL: cfg.TTL, Replicas: cfg.Replicas, Storage: jetstream.FileStorage,
		})
		if !errors.Is(err, jetstream.ErrBucketExists) {
			return wrapBucket(name, store, err)
		}
	}
	return nil, fmt.Errorf("bus: object bucket %s: created and removed while opening it", name)
}

// wrapBucket returns store, or err naming the bucket.
func wrapBucket(name string, store jetstream.ObjectStore, err error) (jetstream.ObjectStore, error) {
	if err != nil {
		return nil, fmt.Errorf("bus: object bucket %s: %w", name, err)
	}
	return store, nil
}

// ListObjects returns the objects of store (none: an empty list, not an
// error), deleted ones left out.
func ListObjects(ctx context.Context, store jetstream.ObjectStore) ([]*jetstream.ObjectInfo, error) {
	infos, err := store.List(ctx)
	switch {
	case errors.Is(err, jetstream.ErrNoObjectsFound):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("bus: listing object bucket: %w", err)
	}
	return infos, nil
}
