package bus_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/mpreg/mpreg/bus"
	"github.com/mpreg/mpreg/internal/testcluster"
)

var bucketName = regexp.MustCompile(`\A[A-Za-z0-9_-]+\z`)

// TestObjectBucket: the name is made of the allowed characters only, is
// the same for the same prefix and cluster, and differs for different
// ones, also where a plain character map would make them collide.
func TestObjectBucket(t *testing.T) {
	for _, c := range []struct{ prefix, cluster, want string }{
		{"", "default", "mpreg-default"},
		{"mpreg", "default", "mpreg-default"},
		{"acme.mpreg", "prod", "acme_2Empreg-prod"},
		{"a_b", "c", "a_5Fb-c"},
		{"a-b", "c", "a_2Db-c"},
		{"a", "b-c", "a-b-c"},
		{"a", "b_c", "a-b_c"},
		{"a", "b.c", "a-b_2Ec"},
	} {
		require.Equal(t, c.want, bus.ObjectBucket(c.prefix, c.cluster), "%q %q", c.prefix, c.cluster)
	}
	seen := map[string][2]string{}
	for _, prefix := range []string{"a", "a.b", "a_b", "a-b", "a_2Eb", "a.b.c", "a-b-c", "x y", "ü"} {
		for _, cluster := range []string{"c", "b-c", "b_c", "c-", "-c", "b_2Ec", "B"} { // valid ids
			name := bus.ObjectBucket(prefix, cluster)
			require.Regexp(t, bucketName, name)
			if prev, ok := seen[name]; ok {
				t.Fatalf("%q %q and %q %q both give %q", prefix, cluster, prev[0], prev[1], name)
			}
			seen[name] = [2]string{prefix, cluster}
		}
	}
	require.Regexp(t, bucketName, bus.ObjectBucket("a", "b.c d"), "an invalid cluster id still gives a valid name")
	long := strings.Repeat("p.", 128)
	name := bus.ObjectBucket(long, strings.Repeat("c", 64))
	require.Len(t, name, bus.MaxBucketName)
	require.Regexp(t, bucketName, name)
	require.NotEqual(t, name, bus.ObjectBucket(long, strings.Repeat("c", 63)+"d"))
}

// TestBucketName: names with a suffix are distinct from each other, also
// where the cluster id holds a '-' that could pass for the suffix's ("" is
// the object store's, a stream namespace of its own).
func TestBucketName(t *testing.T) {
	require.Equal(t, "mpreg-default-requests", bus.BucketName("", "default", "requests"))
	require.Equal(t, "mpreg-default-leases", bus.BucketName("mpreg", "default", "leases"))
	require.Equal(t, bus.ObjectBucket("a.b", "c"), bus.BucketName("a.b", "c", ""))
	require.Equal(t, "a-b-c_2Dd", bus.BucketName("a", "b", "c-d"))
	seen := map[string][3]string{}
	for _, cluster := range []string{"a", "a-leases", "a-requests", "leases", "a_leases"} {
		for _, suffix := range []string{"leases", "requests", "a-leases", "a_2Dleases"} {
			name := bus.BucketName("mpreg", cluster, suffix)
			require.Regexp(t, bucketName, name)
			if prev, ok := seen[name]; ok {
				t.Fatalf("%q %q and %q %q both give %q", cluster, suffix, prev[1], prev[2], name)
			}
			seen[name] = [3]string{"mpreg", cluster, suffix}
		}
	}
	long := bus.BucketName(strings.Repeat("p", 200), strings.Repeat("c", 50), "requests")
	require.Len(t, long, bus.MaxBucketName)
	require.NotEqual(t, long, bus.BucketName(strings.Repeat("p", 200), strings.Repeat("c", 50), "leases"))
}

// TestJetStreamStore: the store directory is created (0700) and locked
// while the server runs: a second server on it is refused with
// ErrStoreInUse, and a server started after the first stopped uses it.
// The size limits reach JetStream.
func TestJetStreamStore(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "mpreg", "c1")
	cfg := bus.ServerConfig{Host: "127.0.0.1", Port: -1,
		JetStream: bus.JetStreamConfig{Enabled: true, StoreDir: dir, MaxStore: 1 << 30, MaxMem: 64 << 20}}
	s1, err := bus.StartServer(cfg)
	require.NoError(t, err)
	fi, err := os.Stat(dir)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o700), fi.Mode().Perm())
	info, ok := s1.JetStream()
	require.True(t, ok)
	require.Equal(t, filepath.Join(dir, "jetstream"), info.StoreDir)
	require.Equal(t, int64(1<<30), info.MaxStore)
	require.Equal(t, int64(64<<20), info.MaxMem)

	_, err = bus.StartServer(cfg)
	require.ErrorIs(t, err, bus.ErrStoreInUse)
	require.ErrorContains(t, err, dir)

	s1.Shutdown()
	s1.Shutdown() // idempotent
	s2, err := bus.StartServer(cfg)
	require.NoError(t, err)
	s2.Shutdown()

	_, err = bus.StartServer(bus.ServerConfig{Host: "127.0.0.1", Port: -1, JetStream: bus.JetStreamConfig{Enabled: true}})
	require.ErrorIs(t, err, bus.ErrInvalidConfig, "JetStream without a store directory")

	off := testcluster.Server(t)
	_, ok = off.JetStream()
	require.False(t, ok)
}

// TestJetStreamServerName: a clustered server with JetStream (which needs
// a name) takes its name from its store, where the first start wrote it:
// it keeps the name across restarts.
func TestJetStreamServerName(t *testing.T) {
	dir := t.TempDir()
	cfg := bus.ServerConfig{Host: "127.0.0.1", Port: -1,
		Cluster:   bus.ClusterConfig{Name: "js", Port: -1},
		JetStream: bus.JetStreamConfig{Enabled: true, StoreDir: dir}}
	_, err := bus.StartServer(cfg)
	require.ErrorIs(t, err, bus.ErrInvalidConfig, "clustered JetStream without routes")
	require.ErrorContains(t, err, "routes")

	port := testcluster.FreePort(t)
	cfg.Cluster.Port, cfg.Cluster.Routes = port, []string{fmt.Sprintf("nats-route://127.0.0.1:%d", port)}
	s, err := bus.StartServer(cfg)
	require.NoError(t, err)
	info, _ := s.JetStream()
	s.Shutdown()
	b, err := os.ReadFile(filepath.Join(dir, "server_name"))
	require.NoError(t, err)
	require.Equal(t, strings.TrimSpace(string(b)), info.ServerName)
	require.NotEmpty(t, info.ServerName)

	s, err = bus.StartServer(cfg)
	require.NoError(t, err)
	again, _ := s.JetStream()
	s.Shutdown()
	require.Equal(t, info.ServerName, again.ServerName)
}

// TestNatsConfigJetStreamWins: a configuration file's own jetstream entry
// decides over the JetStream fields; a file without one takes them.
func TestNatsConfigJetStreamWins(t *testing.T) {
	flagsDir := filepath.Join(t.TempDir(), "flags")
	fileDir := t.TempDir()
	write := func(body string) string {
		path := filepath.Join(t.TempDir(), "nats.conf")
		require.NoError(t, os.WriteFile(path, []byte(body), 0o600))
		return path
	}
	start := func(conf string) *bus.Server {
		s, err := bus.StartServer(bus.ServerConfig{ConfigFile: conf, Host: "127.0.0.1", Port: -1,
			JetStream: bus.JetStreamConfig{Enabled: true, StoreDir: flagsDir, MaxMem: 64 << 20, MaxStore: 1 << 30}})
		require.NoError(t, err)
		t.Cleanup(s.Shutdown)
		return s
	}

	s := start(write("jetstream {\n  store_dir: \"" + fileDir + "\"\n  max_mem: 32MB\n}\n"))
	info, ok := s.JetStream()
	require.True(t, ok)
	require.Equal(t, filepath.Join(fileDir, "jetstream"), info.StoreDir)
	require.Equal(t, int64(32<<20), info.MaxMem)
	require.NotEqual(t, int64(1<<30), info.MaxStore)
	require.NoDirExists(t, flagsDir)
	s.Shutdown()

	s = start(write("JetStream: disabled\n"))
	_, ok = s.JetStream()
	require.False(t, ok, "the file turns JetStream off")
	require.NoDirExists(t, flagsDir)
	s.Shutdown()

	s = start(write("max_payload: 2MB\n"))
	info, ok = s.JetStream()
	require.True(t, ok, "a file without a jetstream entry takes the fields")
	require.Equal(t, filepath.Join(flagsDir, "jetstream"), info.StoreDir)
	require.Equal(t, int64(64<<20), info.MaxMem)
	require.Equal(t, int64(1<<30), info.MaxStore)
}

// TestProbeJetStream: the probe finds JetStream where it is, and says
// ErrNoJetStream at once where it is not, on one server and in a cluster.
func TestProbeJetStream(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testcluster.Timeout)
	defer cancel()
	on := testcluster.Server(t, testcluster.WithJetStream(t.TempDir()))
	info, err := bus.ProbeJetStream(ctx, testcluster.Conn(t, on.ClientURL()))
	require.NoError(t, err)
	require.NotNil(t, info)

	for name, url := range map[string]string{
		"one server": testcluster.Server(t).ClientURL(),
		"cluster":    testcluster.Cluster(t, 3)[1].ClientURL(),
	} {
		nc := testcluster.Conn(t, url)
		pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
		started := time.Now()
		_, err := bus.ProbeJetStream(pctx, nc)
		took := time.Since(started)
		pcancel()
		require.ErrorIs(t, err, bus.ErrNoJetStream, name)
		require.Less(t, took, time.Second, "%s: absent is known from no responders, not from the deadline", name)
	}

	// A server that does not answer (here the account may not publish to
	// the JetStream API) is silent, not absent: it may answer later.
	conf := filepath.Join(t.TempDir(), "nats.conf")
	require.NoError(t, os.WriteFile(conf, []byte(`authorization { users = [
  { user: n, password: p, permissions: { publish: { deny: ["$JS.API.>"] } } }
] }
jetstream { store_dir: "`+t.TempDir()+`" }
`), 0o600))
	silent, err := bus.StartServer(bus.ServerConfig{ConfigFile: conf, Host: "127.0.0.1", Port: -1})
	require.NoError(t, err)
	t.Cleanup(silent.Shutdown)
	sctx, scancel := context.WithTimeout(ctx, 200*time.Millisecond)
	_, err = bus.ProbeJetStream(sctx, testcluster.Conn(t, silent.ClientURL(),
		testcluster.WithConnConfig(bus.ConnConfig{Servers: []string{silent.ClientURL()}, Auth: bus.Auth{User: "n", Password: "p"}})))
	scancel()
	require.ErrorIs(t, err, bus.ErrJetStreamSilent)
	require.NotErrorIs(t, err, bus.ErrNoJetStream)

	// A cancelled probe is not taken for an absent JetStream.
	cctx, ccancel := context.WithCancel(ctx)
	ccancel()
	_, err = bus.ProbeJetStream(cctx, testcluster.Conn(t, on.ClientURL()))
	require.Error(t, err)
	require.NotErrorIs(t, err, bus.ErrNoJetStream)
	require.NotErrorIs(t, err, bus.ErrJetStreamSilent)
}

// TestOpenObjects: the bucket is created with the TTL and replicas asked
// for, keeps an object, and is opened as it is on the next open, even with
// other settings. Bad settings and a server without JetStream are errors.
func TestOpenObjects(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testcluster.Timeout)
	defer cancel()
	s := testcluster.Server(t, testcluster.WithJetStream(t.TempDir()))
	js, err := jetstream.New(testcluster.Conn(t, s.ClientURL()))
	require.NoError(t, err)

	store, err := bus.OpenObjects(ctx, js, bus.ObjectsConfig{Cluster: "c1"})
	require.NoError(t, err)
	st, err := store.Status(ctx)
	require.NoError(t, err)
	require.Equal(t, "mpreg-c1", st.Bucket())
	require.Equal(t, bus.DefaultObjectTTL, st.TTL())
	require.Equal(t, 1, st.Replicas())
	require.Equal(t, jetstream.FileStorage, st.Storage())

	infos, err := bus.ListObjects(ctx, store)
	require.NoError(t, err, "an empty bucket lists nothing")
	require.Empty(t, infos)

	value := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB: more than one chunk
	_, err = store.PutBytes(ctx, "v1", value)
	require.NoError(t, err)
	_, err = store.PutBytes(ctx, "v2", value[:10])
	require.NoError(t, err)
	require.NoError(t, store.Delete(ctx, "v2"))
	infos, err = bus.ListObjects(ctx, store)
	require.NoError(t, err)
	require.Len(t, infos, 1, "deleted objects are left out")
	require.Equal(t, "v1", infos[0].Name)
	require.EqualValues(t, len(value), infos[0].Size)

	again, err := bus.OpenObjects(ctx, js, bus.ObjectsConfig{Cluster: "c1", TTL: time.Minute})
	require.NoError(t, err)
	got, err := again.GetBytes(ctx, "v1")
	require.NoError(t, err)
	require.Equal(t, value, got)
	st, err = again.Status(ctx)
	require.NoError(t, err)
	require.Equal(t, bus.DefaultObjectTTL, st.TTL(), "an existing bucket is not rewritten")

	other, err := bus.OpenObjects(ctx, js, bus.ObjectsConfig{Prefix: "acme.mpreg", Cluster: "c1", TTL: time.Minute})
	require.NoError(t, err)
	st, err = other.Status(ctx)
	require.NoError(t, err)
	require.Equal(t, "acme_2Empreg-c1", st.Bucket())
	require.Equal(t, time.Minute, st.TTL())
	_, err = other.GetBytes(ctx, "v1")
	require.ErrorIs(t, err, jetstream.ErrObjectNotFound, "buckets of other prefixes are apart")

	for _, bad := range []bus.ObjectsConfig{{}, {Cluster: "c", TTL: time.Millisecond}, {Cluster: "c", Replicas: 6}, {Cluster: "c", Replicas: -1}} {
		_, err := bus.OpenObjects(ctx, js, bad)
		require.ErrorIs(t, err, bus.ErrInvalidConfig, "%+v", bad)
	}
	_, err = bus.OpenObjects(ctx, js, bus.ObjectsConfig{Cluster: "c1", Replicas: 3})
	require.NoError(t, err, "an existing bucket opens whatever replicas are asked for")

	offJS, err := jetstream.New(testcluster.Conn(t, testcluster.Server(t).ClientURL()))
	require.NoError(t, err)
	_, err = bus.OpenObjects(ctx, offJS, bus.ObjectsConfig{Cluster: "c1"})
	require.Error(t, err)
	require.True(t, errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, nats.ErrNoResponders), "%v", err)
}
