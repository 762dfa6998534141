package durable_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mpreg/mpreg/durable"
)

// benchStore is a store on a JetStream server of its own, file storage.
func benchStore(b *testing.B) (*durable.Store, jetstream.JetStream) {
	srv := server(b, b.TempDir(), -1)
	_, js := jsOf(b, srv.ClientURL())
	s, err := durable.Open(context.Background(), js, durable.Options{Cluster: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	return s, js
}

// BenchmarkRawKVCreate is the baseline: one KV create, the round trip
// every write of the store is built on.
func BenchmarkRawKVCreate(b *testing.B) {
	_, js := benchStore(b)
	ctx := context.Background()
	kv, err := js.KeyValue(ctx, durable.RequestsBucket("", "bench"))
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; b.Loop(); i++ {
		if _, err := kv.Create(ctx, fmt.Sprint("raw.", i), []byte("value")); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAccept: a new request recorded (create, then the Final looked
// for).
func BenchmarkAccept(b *testing.B) {
	s, _ := benchStore(b)
	ctx := context.Background()
	body := make([]byte, 200)
	for i := 0; b.Loop(); i++ {
		if _, _, err := s.Accept(ctx, &durable.Record{ID: fmt.Sprint("r", i), Caller: "bench", Body: body}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRecordStep: one step's result recorded.
func BenchmarkRecordStep(b *testing.B) {
	s, _ := benchStore(b)
	ctx := context.Background()
	key := durable.Key("bench", "steps")
	value := make([]byte, 64)
	for i := 0; b.Loop(); i++ {
		if _, err := s.RecordStep(ctx, key, fmt.Sprint("|s", i), value); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLifecycle: accept, acquire, two steps, finish, release: the
// store's whole part in a two-step durable request.
func BenchmarkLifecycle(b *testing.B) {
	s, _ := benchStore(b)
	ctx := context.Background()
	for i := 0; b.Loop(); i++ {
		id := fmt.Sprint("r", i)
		key := durable.Key("bench", id)
		if _, _, err := s.Accept(ctx, &durable.Record{ID: id, Caller: "bench"}); err != nil {
			b.Fatal(err)
		}
		l, err := s.Acquire(ctx, key, "n1")
		if err != nil {
			b.Fatal(err)
		}
		for _, step := range []string{"|a", "|b"} {
			if _, err := s.RecordStep(ctx, key, step, []byte("v")); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := s.Finish(ctx, key, &durable.Final{ID: id, Status: durable.StatusDone}, time.Hour); err != nil {
			b.Fatal(err)
		}
		if err := l.Release(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
