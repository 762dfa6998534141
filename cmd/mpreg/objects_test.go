package main

import (
	"bytes"
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mpreg/mpreg/bus"
	"github.com/mpreg/mpreg/internal/testcluster"
	"github.com/mpreg/mpreg/objref/objstore"
)

// TestObjectsCommand: `mpreg objects ls` lists the cluster's bucket, with
// the node and request of each object from its metadata, as a table and
// as JSON; `mpreg objects rm` deletes by name (a name not there is an
// error), by age and all.
func TestObjectsCommand(t *testing.T) {
	t.Parallel()
	s := testcluster.Server(t, testcluster.WithJetStream(t.TempDir()))
	url := s.ClientURL()
	r := mpreg(t, opts{}, "objects", "ls", "--servers", url)
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "cluster default has no object bucket mpreg-default: no value passed by reference yet")

	ctx, cancel := context.WithTimeout(context.Background(), testcluster.Timeout)
	defer cancel()
	js, err := jetstream.New(testcluster.Conn(t, url))
	require.NoError(t, err)
	store, err := bus.OpenObjects(ctx, js, bus.ObjectsConfig{Cluster: "default"})
	require.NoError(t, err)
	put := func(name, id string, size int) {
		// Each put has a bound of its own: the commands between them take
		// their time, under the race detector most of all.
		ctx, cancel := context.WithTimeout(context.Background(), testcluster.Timeout)
		defer cancel()
		meta := map[string]string{objstore.MetaNode: "n1", objstore.MetaID: id}
		if id == "" {
			meta = nil
		}
		_, err := store.Put(ctx, jetstream.ObjectMeta{Name: name, Metadata: meta}, bytes.NewReader(make([]byte, size)))
		require.NoError(t, err)
	}
	put("r1/x/A", "r1/x", 3<<20)
	put("r1/y/B", "r1/y", 1000)
	put("mine", "", 10)

	r = mpreg(t, opts{}, "objects", "ls", "--servers", url)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Regexp(t, `NAME +SIZE +AGE +NODE +REQUEST +STEP\n`+
		`r1/x/A +3MiB +\d+s +n1 +r1 +x\n`+
		`r1/y/B +1000 +\d+s +n1 +r1 +y\n`+
		`mine +10 +\d+s +- +- +-\n`+
		`3 objects, 3\.0MiB\n$`, r.stdout)

	r = mpreg(t, opts{}, "objects", "ls", "--json", "--servers", url)
	require.Equal(t, 0, r.code, r.stderr)
	l := decode(t, r.stdout).([]any)
	require.Len(t, l, 3)
	first := l[0].(map[string]any)
	assert.Equal(t, "r1/x/A", first["name"])
	assert.EqualValues(t, 3<<20, first["size"])
	assert.Equal(t, "n1", first["node"])
	assert.Equal(t, "r1", first["request_id"])
	assert.Equal(t, "x", first["step"])
	modified, err := time.Parse(time.RFC3339Nano, first["modified"].(string))
	require.NoError(t, err)
	assert.WithinDuration(t, time.Now(), modified, time.Minute)
	assert.NotContains(t, l[2], "node", "an object without metadata names no node")

	r = mpreg(t, opts{}, "objects", "rm", "--servers", url)
	assert.Equal(t, 2, r.code)
	assert.Contains(t, r.stderr, "name the objects to delete, or give --all or --older-than (one of the three)")
	r = mpreg(t, opts{}, "objects", "rm", "--all", "--older-than", "1h", "--servers", url)
	assert.Equal(t, 2, r.code)

	r = mpreg(t, opts{}, "objects", "rm", "--older-than", "1h", "--servers", url)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "deleted 0 objects\n", r.stdout)

	r = mpreg(t, opts{}, "objects", "rm", "r1/x/A", "gone", "--servers", url)
	assert.Equal(t, 1, r.code)
	assert.Equal(t, "deleted 1 object\n", r.stdout)
	assert.Contains(t, r.stderr, "no such object: gone")

	r = mpreg(t, opts{}, "objects", "rm", "--older-than", "1ms", "--servers", url)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "deleted 2 objects\n", r.stdout)

	put("r2/x/C", "r2/x", 5)
	put("r2/y/D", "r2/y", 5)
	r = mpreg(t, opts{}, "objects", "rm", "--all", "--servers", url)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "deleted 2 objects\n", r.stdout)
	r = mpreg(t, opts{}, "objects", "ls", "--servers", url)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "no objects\n", r.stdout)
}

// TestObjectTTLFlags: --object-ttl is the max age of the bucket a node
// creates, and --result-ttl reaches the node (it logs it).
func TestObjectTTLFlags(t *testing.T) {
	t.Parallel()
	s := testcluster.Server(t, testcluster.WithJetStream(t.TempDir()))
	d := startDaemon(t, "node", "--servers", s.ClientURL(), "--node-id", "ttl1", "--object-ttl", "2m", "--result-ttl", "90s")
	d.waitLog(t, `msg="values larger than the inline limit pass by reference" node=ttl1 bucket=mpreg-default`)
	assert.Contains(t, d.stderr.String(), " result_ttl=1m30s")
	d.waitLog(t, "node serving")
	ctx, cancel := context.WithTimeout(context.Background(), testcluster.Timeout)
	defer cancel()
	js, err := jetstream.New(testcluster.Conn(t, s.ClientURL()))
	require.NoError(t, err)
	store, err := js.ObjectStore(ctx, "mpreg-default")
	require.NoError(t, err)
	st, err := store.Status(ctx)
	require.NoError(t, err)
	assert.Equal(t, 2*time.Minute, st.TTL())
	d.stop(t, syscall.SIGTERM, 0)
}
