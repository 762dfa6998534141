//go:build unix

package mesh_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mpreg/mpreg/bus"
	"github.com/mpreg/mpreg/codec"
	"github.com/mpreg/mpreg/internal/testcluster"
	"github.com/mpreg/mpreg/membership"
	"github.com/mpreg/mpreg/mesh"
	"github.com/mpreg/mpreg/schema"
)

// BenchmarkGossipHeartbeat is what one heartbeat costs the process that
// hears it, end to end: published by a peer's connection, delivered by an
// embedded nats-server, read and applied by a Follower whose table holds
// the nodes of a cluster of that size. It reports the process CPU time per
// heartbeat (publisher, server and follower together, on loopback).
func BenchmarkGossipHeartbeat(b *testing.B) {
	for _, n := range []int{10, 100, 1000, 10000} {
		b.Run(fmt.Sprintf("nodes=%d", n), func(b *testing.B) {
			srv := testcluster.Server(b)
			table := membership.New(membership.Config{MaxNodes: n + 1, DeadAfter: time.Hour, ForgetAfter: time.Hour})
			bodies := make([][]byte, n)
			for i := range n {
				id := fmt.Sprintf("node-%05d", i)
				table.ApplyHello(&schema.Hello{Cluster: "default", Node: id, Incarnation: 1, Version: 1,
					Funs: map[string][]string{"f": {"x"}}})
				data, err := codec.JSON.Encode(&schema.Heartbeat{Cluster: "default", Node: id, Incarnation: 1, Version: 1,
					Load: schema.Load{Inflight: 1, Limit: 256}})
				if err != nil {
					b.Fatal(err)
				}
				bodies[i] = data
			}
			var heard atomic.Int64
			done := make(chan struct{}, 1)
			var want atomic.Int64
			f, err := mesh.Follow(context.Background(), mesh.FollowConfig{
				Conn: testcluster.Conn(b, srv.ClientURL()), Subjects: subj, Cluster: "default", Table: table,
				SyncQuiet: time.Millisecond, PruneInterval: time.Hour,
				Received: func(kind string) {
					if kind == "heartbeat" && heard.Add(1) == want.Load() {
						done <- struct{}{}
					}
				},
			})
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			pub := testcluster.Conn(b, srv.ClientURL())
			subject := subj.Heartbeat()
			cpu0 := processCPU()
			b.ResetTimer()
			want.Store(int64(b.N))
			for i := range b.N {
				if err := pub.PublishMsg(bus.NewMsg(subject, bodies[i%n], codec.JSONType, "")); err != nil {
					b.Fatal(err)
				}
			}
			select {
			case <-done:
			case <-time.After(time.Minute):
				b.Fatalf("heard %d of %d heartbeats", heard.Load(), b.N)
			}
			b.StopTimer()
			b.ReportMetric(float64((processCPU()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
		})
	}
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
