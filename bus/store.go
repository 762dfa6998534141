package bus

import (
	"cmp"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/nats-io/nats-server/v2/conf"
	"github.com/nats-io/nats-server/v2/server"
)

// ErrStoreInUse is StartServer's error when another process holds the
// JetStream store directory.
var ErrStoreInUse = errors.New("bus: JetStream store in use by another process")

// Files MPREG keeps in a store directory, next to nats-server's
// "jetstream" subdirectory.
const (
	storeLockFile   = "mpreg.lock"
	serverNameFile  = "server_name"
	maxServerNameLn = 128
)

// jetStreamOptions turns JetStream on as cfg says, unless the ConfigFile
// has a jetstream block of its own, which decides instead.
func (cfg ServerConfig) jetStreamOptions(opts *server.Options) error {
	if cfg.ConfigFile != "" {
		own, err := fileConfiguresJetStream(cfg.ConfigFile)
		if err != nil {
			return err
		}
		if own {
			return nil
		}
	}
	if !cfg.JetStream.Enabled {
		return nil
	}
	opts.JetStream = true
	opts.StoreDir = cmp.Or(opts.StoreDir, cfg.JetStream.StoreDir) // a file's top-level store_dir wins
	if opts.StoreDir == "" {
		return fmt.Errorf("%w: JetStream needs a store directory", ErrInvalidConfig)
	}
	if cfg.JetStream.MaxStore > 0 {
		opts.JetStreamMaxStore = cfg.JetStream.MaxStore
	}
	if cfg.JetStream.MaxMem > 0 {
		opts.JetStreamMaxMemory = cfg.JetStream.MaxMem
	}
	return nil
}

// fileConfiguresJetStream reports whether a nats-server configuration file
// has a top-level jetstream entry (a block, a bool or enabled/disabled).
func fileConfiguresJetStream(path string) (bool, error) {
	m, err := conf.ParseFile(path)
	if err != nil {
		return false, fmt.Errorf("%w: nats config: %w", ErrInvalidConfig, err)
	}
	for k := range m {
		if strings.EqualFold(k, "jetstream") {
			return true, nil
		}
	}
	return false, nil
}

// prepareStore creates the store directory of a server with JetStream,
// locks it, and names a clustered server that has no name. unlock releases
// the lock; it is idempotent, and a no-op without a store.
func prepareStore(opts *server.Options) (unlock func(), err error) {
	unlock = func() {}
	if !opts.JetStream || opts.StoreDir == "" {
		return unlock, nil
	}
	if opts.Cluster.Port != 0 && len(opts.Routes) == 0 && len(opts.LeafNode.Remotes) == 0 {
		// nats-server would start, fail to start JetStream, and never
		// become ready.
		return unlock, fmt.Errorf("%w: JetStream in a NATS cluster needs routes to the cluster's servers (every server lists them all, itself included)", ErrInvalidConfig)
	}
	dir := opts.StoreDir
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return unlock, fmt.Errorf("bus: JetStream store: %w", err)
	}
	release, err := lockDir(filepath.Join(dir, storeLockFile))
	if err != nil {
		return unlock, fmt.Errorf("%w: %s: %w", ErrStoreInUse, dir, err)
	}
	var once sync.Once
	unlock = func() { once.Do(release) }
	if opts.Cluster.Port != 0 && opts.ServerName == "" {
		if opts.ServerName, err = storedServerName(dir); err != nil {
			unlock()
			return func() {}, err
		}
	}
	return unlock, nil
}

// storedServerName is the server name kept in dir's server_name file,
// written there first as the host name and a random suffix.
func storedServerName(dir string) (string, error) {
	path := filepath.Join(dir, serverNameFile)
	b, err := os.ReadFile(path)
	if err == nil {
		name := strings.TrimSpace(string(b))
		if name == "" || len(name) > maxServerNameLn || strings.ContainsAny(name, " \t\r\n") {
			return "", fmt.Errorf("%w: %s: not a server name (1 to %d characters, no spaces)", ErrInvalidConfig, path, maxServerNameLn)
		}
		return name, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("bus: JetStream store: %w", err)
	}
	var suffix [4]byte
	_, _ = rand.Read(suffix[:]) // never fails (crypto/rand)
	host, _ := os.Hostname()
	name := sanitizeName(host) + "-" + hex.EncodeToString(suffix[:])
	if err := os.WriteFile(path, []byte(name+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("bus: JetStream store: %w", err)
	}
	return name, nil
}

// sanitizeName keeps the letters, digits, '-' and '_' of a host name (at
// most 64), "mpreg" when none is left.
func sanitizeName(s string) string {
	var b strings.Builder
	for _, r := range s {
		if b.Len() >= 64 {
			break
		}
		if r < 0x80 && (r == '-' || r == '_' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9')) {
			b.WriteRune(r)
		}
	}
	return cmp.Or(b.String(), "mpreg")
}

// JetStreamInfo is what an embedded server's JetStream runs with.
type JetStreamInfo struct {
	StoreDir   string // where its files are (the store's "jetstream" subdirectory)
	MaxStore   int64  // bytes on disk at most
	MaxMem     int64  // bytes in memory at most
	ServerName string
}

// JetStream returns the server's JetStream settings, and false when
// JetStream is off.
func (s *Server) JetStream() (JetStreamInfo, bool) {
	c := s.s.JetStreamConfig()
	if c == nil {
		return JetStreamInfo{}, false
	}
	return JetStreamInfo{StoreDir: c.StoreDir, MaxStore: c.MaxStore, MaxMem: c.MaxMemory, ServerName: s.s.Name()}, true
}
