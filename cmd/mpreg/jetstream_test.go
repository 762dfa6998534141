package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mpreg/mpreg/internal/testcluster"
)

// waitLog waits until the daemon has logged want.
func (d *daemon) waitLog(t *testing.T, want string) {
	t.Helper()
	d.waitFor(t, fmt.Sprintf("%q in the log", want), func() error {
		if !strings.Contains(d.stderr.String(), want) {
			return fmt.Errorf("not yet")
		}
		return nil
	})
}

func listenArg(t *testing.T) string { return fmt.Sprintf("127.0.0.1:%d", testcluster.FreePort(t)) }

// TestServerJetStream: `mpreg server` runs JetStream in --store, created
// 0700, with the size flags, names it in its log, and its node finds
// JetStream; a second server on the same store is refused with a message
// that says what to do.
func TestServerJetStream(t *testing.T) {
	t.Parallel()
	store := filepath.Join(t.TempDir(), "js")
	d := startDaemon(t, "server", "--listen", listenArg(t), "--store", store, "--js-max-store", "1GiB", "--js-max-mem", "64MiB",
		"--node-id", "js1", "--drain-timeout", "5s")
	d.waitLog(t, "node serving")
	d.waitLog(t, `msg="JetStream available" node=js1`)
	assert.Contains(t, d.stderr.String(), `msg="JetStream on" store=`+store+` max_store=1GiB max_mem=64MiB`)
	fi, err := os.Stat(store)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o700), fi.Mode().Perm())

	r := mpreg(t, opts{}, "server", "--listen", listenArg(t), "--store", store, "--no-node")
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "JetStream store in use by another process: "+store)
	assert.Contains(t, r.stderr, "give each server on this host its own --store DIR")
	d.stop(t, syscall.SIGTERM, 0)
	assert.Equal(t, 1, strings.Count(d.stderr.String(), "JetStream available"), "logged once")
}

// TestServerJetStreamDefaults: the default store is
// $XDG_DATA_HOME/mpreg/<cluster>, else ~/.local/share/mpreg/<cluster>;
// with neither a usage error says what to give. --no-jetstream turns it
// off, and the node then logs JetStream absent.
func TestServerJetStreamDefaults(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	d := startDaemonEnv(t, []string{"XDG_DATA_HOME=" + data}, "server", "--listen", listenArg(t), "--cluster", "c7", "--no-node")
	d.waitLog(t, `msg="JetStream on" store=`+filepath.Join(data, "mpreg", "c7")+" ")
	require.DirExists(t, filepath.Join(data, "mpreg", "c7", "jetstream"))
	d.stop(t, syscall.SIGTERM, 0)

	home := t.TempDir()
	d = startDaemonEnv(t, []string{"XDG_DATA_HOME=relative/not/used", "HOME=" + home}, "server", "--listen", listenArg(t), "--no-node")
	d.waitLog(t, `msg="JetStream on" store=`+filepath.Join(home, ".local", "share", "mpreg", "default")+" ")
	d.stop(t, syscall.SIGTERM, 0)

	r := mpreg(t, opts{env: []string{"XDG_DATA_HOME=", "HOME="}}, "server", "--listen", listenArg(t), "--no-node")
	assert.Equal(t, 2, r.code)
	assert.Contains(t, r.stderr, "--store: no default directory")
	assert.Contains(t, r.stderr, "give --store DIR, or --no-jetstream")

	d = startDaemonEnv(t, []string{"XDG_DATA_HOME=", "HOME="}, "server", "--listen", listenArg(t), "--no-jetstream", "--node-id", "nojs")
	d.waitLog(t, `msg="JetStream absent: values too large for a message cannot be passed by reference" node=nojs`)
	d.waitLog(t, "node serving")
	assert.Contains(t, d.stderr.String(), `msg="JetStream off"`)
	d.stop(t, syscall.SIGTERM, 0)
}

// TestServerJetStreamConfigFileWins: a --nats-config file's own jetstream
// block decides over --store and the --js-* flags; a file without one
// takes them.
func TestServerJetStreamConfigFileWins(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	flagStore, fileStore := filepath.Join(dir, "flags"), filepath.Join(dir, "file")
	conf := func(name, body string) string {
		path := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(path, []byte(body), 0o600))
		return path
	}
	run := func(file, want string) {
		t.Helper()
		d := startDaemon(t, "server", "--nats-config", file, "--listen", listenArg(t), "--no-node",
			"--store", flagStore, "--js-max-store", "1GiB", "--js-max-mem", "64MiB")
		d.waitLog(t, want)
		d.stop(t, syscall.SIGTERM, 0)
	}
	run(conf("block.conf", "jetstream {\n  store_dir: \""+fileStore+"\"\n  max_mem: 32MB\n}\n"),
		`msg="JetStream on" store=`+fileStore+" max_store=")
	require.NoDirExists(t, flagStore)
	run(conf("off.conf", "jetstream: disabled\n"), `msg="JetStream off"`)
	require.NoDirExists(t, flagStore)
	run(conf("none.conf", "max_payload: 2MB\n"), `msg="JetStream on" store=`+flagStore+" max_store=1GiB max_mem=64MiB")
}

// TestNodeJetStreamProbe: `mpreg node` against external NATS logs once
// whether JetStream is there.
func TestNodeJetStreamProbe(t *testing.T) {
	t.Parallel()
	on := testcluster.Server(t, testcluster.WithJetStream(t.TempDir()))
	off := testcluster.Server(t)
	d := startDaemon(t, "node", "--servers", on.ClientURL(), "--node-id", "ext-on")
	d.waitLog(t, `msg="JetStream available" node=ext-on`)
	d.waitLog(t, "node serving")
	d.stop(t, syscall.SIGTERM, 0)
	d = startDaemon(t, "node", "--servers", off.ClientURL(), "--node-id", "ext-off")
	d.waitLog(t, `msg="JetStream absent: values too large for a message cannot be passed by reference" node=ext-off`)
	d.waitLog(t, "node serving")
	d.stop(t, syscall.SIGTERM, 0)
	assert.Equal(t, 1, strings.Count(d.stderr.String(), "JetStream absent"), "logged once")
}
