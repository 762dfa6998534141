package testcluster

import (
	"context"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
)

// JetStreamServer starts an embedded nats-server with JetStream, storing
// in a directory of t's, on a random loopback port, and shuts it down at
// cleanup. edit, when not nil, adjusts its options first.
func JetStreamServer(t testing.TB, edit func(*server.Options)) *server.Server {
	t.Helper()
	opts := &server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true,
		JetStream: true, StoreDir: t.TempDir()}
	if edit != nil {
		edit(opts)
	}
	return runServer(t, opts)
}

func runServer(t testing.TB, opts *server.Options) *server.Server {
	t.Helper()
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("nats-server: %v", err)
	}
	go s.Start() // Shutdown stops it and waits
	if !s.ReadyForConnections(Timeout) {
		s.Shutdown()
		t.Fatal("nats-server with JetStream did not become ready")
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s
}

// JetStreamCluster starts n routed nats-servers that form one JetStream
// cluster, and waits until it has a meta leader (streams can be created).
func JetStreamCluster(t testing.TB, n int) []*server.Server {
	t.Helper()
	ports := make([]int, n)
	for i := range ports {
		ports[i] = FreePort(t)
	}
	var routes []*url.URL
	for _, p := range ports {
		routes = append(routes, &url.URL{Scheme: "nats-route", Host: fmt.Sprintf("127.0.0.1:%d", p)})
	}
	var out []*server.Server
	for i := range n {
		opts := &server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true,
			ServerName: fmt.Sprintf("js-%d", i), JetStream: true, StoreDir: t.TempDir(),
			Cluster: server.ClusterOpts{Name: "jstest", Host: "127.0.0.1", Port: ports[i]}, Routes: routes}
		out = append(out, runServer(t, opts))
	}
	WaitFor(t, "a JetStream meta leader", func() error {
		for _, s := range out {
			if s.JetStreamIsLeader() {
				return nil
			}
		}
		return fmt.Errorf("no meta leader among %d servers", n)
	})
	return out
}

// ObjectBucket creates the object bucket named bucket with replicas
// copies on the server at url (retrying while a new JetStream cluster
// settles), as an operator does before starting nodes.
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
