package bus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ErrNoJetStream is OpenObjectStore's error when the connection's account
// has no JetStream (the server runs without it, or the account may not
// use it).
var ErrNoJetStream = errors.New("bus: JetStream is not enabled for this connection's account")

// DefaultObjectTTL is the max age of the objects of a bucket that
// OpenObjectStore creates: a backstop, so that objects nobody deletes do
// not stay forever.
const DefaultObjectTTL = time.Hour

// ObjectBucket is the name of the JetStream object bucket of cluster
// under prefix (docs/PROTOCOL.md §4.7): the prefix with every character
// other than ASCII letters, digits, '_' and '-' made '_', then '_' and the
// cluster id. "mpreg" and "default" give "mpreg_default".
func ObjectBucket(prefix, cluster string) string {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	var b strings.Builder
	b.Grow(len(prefix) + 1 + len(cluster))
	for i := 0; i < len(prefix); i++ {
		c := prefix[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' {
			b.WriteByte(c)
		} else {
			b.WriteByte('_')
		}
	}
	b.WriteByte('_')
	b.WriteString(cluster)
	return b.String()
}

// OpenObjectStore opens the object bucket named bucket on nc, creating it
// (file storage, one replica, objects kept at most maxAge, 0 meaning
// DefaultObjectTTL) when it does not exist: an operator who wants
// replicas or other limits creates it beforehand. It returns
// ErrNoJetStream when the account has no JetStream.
func OpenObjectStore(ctx context.Context, nc *nats.Conn, bucket string, maxAge time.Duration) (jetstream.ObjectStore, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("bus: jetstream: %w", err)
	}
	if _, err := js.AccountInfo(ctx); err != nil {
		if errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) {
			return nil, fmt.Errorf("%w: %w", ErrNoJetStream, err)
		}
		return nil, fmt.Errorf("bus: jetstream account info: %w", err)
	}
	if maxAge <= 0 {
		maxAge = DefaultObjectTTL
	}
	for range 2 { // a second try when another node created it meanwhile
		os, err := js.ObjectStore(ctx, bucket)
		if err == nil {
			return os, nil
		}
		if !errors.Is(err, jetstream.ErrBucketNotFound) {
			return nil, fmt.Errorf("bus: object bucket %s: %w", bucket, err)
		}
		os, err = js.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: bucket, TTL: maxAge,
			Description: "MPREG values passed by reference", Storage: jetstream.FileStorage})
		if err == nil {
			return os, nil
		}
		if !errors.Is(err, jetstream.ErrBucketExists) {
			return nil, fmt.Errorf("bus: create object bucket %s: %w", bucket, err)
		}
	}
	return nil, fmt.Errorf("bus: object bucket %s: created and removed again meanwhile", bucket)
}
