package testcluster

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ObjectBucket creates the object bucket named bucket with replicas
// copies on the server at url (retrying while a new JetStream cluster
// elects its meta leader), as an operator does before starting nodes.
func ObjectBucket(t testing.TB, url, bucket string, replicas int) {
	t.Helper()
	nc := Conn(t, url)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	WaitFor(t, "object bucket "+bucket, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: bucket, Replicas: replicas, Storage: jetstream.FileStorage})
		return err
	})
}
