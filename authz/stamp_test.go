package authz_test

import (
	"bufio"
	"fmt"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/mpreg/mpreg/authz"
	"github.com/mpreg/mpreg/bus"
	"github.com/mpreg/mpreg/internal/testsecure"
)

// stampConf: bob in APP reaches MPREG's ext.rpc through an import of it
// (the way docs/SECURITY.md sets up), and its rpc through an import of rpc
// itself (the way it must not be done), both with share: true.
const stampConf = `accounts {
  MPREG {
    users: [{user: node, password: "node-pass"}]
    exports: [
      {service: "mpreg.default.ext.rpc", response_type: stream}
      {service: "mpreg.default.rpc", response_type: stream}
    ]
  }
  APP {
    users: [{user: bob, password: "bob-pass"}]
    imports: [
      {service: {account: MPREG, subject: "mpreg.default.ext.rpc"}, to: "mpreg.default.rpc", share: true}
      {service: {account: MPREG, subject: "mpreg.default.rpc"}, to: "legacy.rpc", share: true}
    ]
  }
}
`

// stampRig is a real nats-server with stampConf, a raw protocol
// connection as bob (to write header blocks nats.go would never write),
// and the nodes' side reading what arrives on both subjects.
type stampRig struct {
	t      testing.TB
	url    string
	raw    net.Conn
	rd     *bufio.Reader
	ext    *nats.Subscription
	legacy *nats.Subscription
	seq    int
}

func newStampRig(t testing.TB) *stampRig {
	t.Helper()
	srv := testsecure.Server(t, stampConf)
	r := &stampRig{t: t, url: srv.ClientURL()}
	nc, err := nats.Connect(r.url, nats.UserInfo("node", "node-pass"))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	r.ext, err = nc.SubscribeSync("mpreg.default.ext.rpc")
	require.NoError(t, err)
	r.legacy, err = nc.SubscribeSync("mpreg.default.rpc")
	require.NoError(t, err)
	require.NoError(t, nc.Flush())
	r.dial()
	t.Cleanup(func() { _ = r.raw.Close() })
	return r
}

// dial opens bob's raw connection (again, after the server closed it).
func (r *stampRig) dial() {
	r.t.Helper()
	if r.raw != nil {
		_ = r.raw.Close()
	}
	u, err := url.Parse(r.url)
	require.NoError(r.t, err)
	r.raw, err = net.Dial("tcp", u.Host)
	require.NoError(r.t, err)
	r.rd = bufio.NewReader(r.raw)
	_, err = r.rd.ReadString('\n') // INFO
	require.NoError(r.t, err)
	_, err = fmt.Fprintf(r.raw, "CONNECT {\"user\":\"bob\",\"pass\":\"bob-pass\",\"headers\":true,\"verbose\":false,\"protocol\":1}\r\nPING\r\n")
	require.NoError(r.t, err)
	r.pong()
}

// pong reads until PONG and reports whether the server took everything
// before it (no -ERR).
func (r *stampRig) pong() bool {
	r.t.Helper()
	ok := true
	require.NoError(r.t, r.raw.SetReadDeadline(time.Now().Add(5*time.Second)))
	for {
		line, err := r.rd.ReadString('\n')
		if err != nil {
			return false // the server closed the connection
		}
		switch {
		case strings.HasPrefix(line, "PONG"):
			return ok
		case strings.HasPrefix(line, "-ERR"):
			ok = false
		}
	}
}

// send publishes hdr and a body on subject (with a reply subject unless
// reply is ""), and returns the message the nodes' side received, or nil
// when the server did not deliver it.
func (r *stampRig) send(subject, reply string, hdr []byte, sub *nats.Subscription) *nats.Msg {
	r.t.Helper()
	r.seq++
	body := fmt.Sprintf(`{"n":%d}`, r.seq)
	marker := fmt.Sprintf(`{"marker":%d}`, r.seq)
	_, err := fmt.Fprintf(r.raw, "HPUB %s %s %d %d\r\n%s%s\r\nPUB %s %d\r\n%s\r\nPING\r\n",
		subject, reply, len(hdr), len(hdr)+len(body), hdr, body, subject, len(marker), marker)
	require.NoError(r.t, err)
	if !r.pong() {
		r.dial()
	}
	for {
		m, err := sub.NextMsg(5 * time.Second)
		require.NoError(r.t, err, "neither the message nor the marker after it arrived")
		switch string(m.Data) {
		case marker:
			return nil
		case body:
			_, err := sub.NextMsg(5 * time.Second) // its marker
			require.NoError(r.t, err)
			return m
		}
	}
}

func read(m *nats.Msg, entry authz.Entry) (authz.Caller, error) {
	return authz.Read(authz.Msg{Header: m.Header, HeaderBytes: bus.HeaderBytes(m), Reply: m.Reply, Entry: entry})
}

// headerTricks are header blocks a caller writes so that the stamp NATS
// adds is lost or hidden.
var headerTricks = map[string]string{
	"line without colon": "NATS/1.0\r\nGarbageLineWithoutColon\r\n\r\n",
	"short status line":  "NATS/1.0 1\r\n\r\n",
	"no blank line":      "NATS/1.0\r\nX-Evil: a\r\n",
	"open empty key":     "NATS/1.0\r\n:\r\n",
	"own stamp, open":    "NATS/1.0\r\nNats-Request-Info: {\"acc\":\"MPREG\"}\r\n",
	"padding":            "NATS/1.0\r\nX:             a\r\n\r\n",
}

// TestStampTricks: through the import of ext.rpc, every header trick is
// either refused or read as bob, never as the nodes' own account; through
// an import of rpc itself, everything is refused. A plain request is bob.
func TestStampTricks(t *testing.T) {
	r := newStampRig(t)
	m := r.send("mpreg.default.rpc", "_INBOX.x", []byte("NATS/1.0\r\nContent-Type: application/json\r\n\r\n"), r.ext)
	require.NotNil(t, m)
	require.Equal(t, len("NATS/1.0\r\nContent-Type: application/json\r\n\r\n")+len(authz.HeaderRequestInfo)+4+len(m.Header.Get(authz.HeaderRequestInfo)), bus.HeaderBytes(m))
	c, err := read(m, authz.EntryImport)
	require.NoError(t, err)
	require.Equal(t, authz.Caller{Stamped: true, Account: "APP", User: "bob"}, c)
	_, err = read(m, authz.EntryLocal)
	require.ErrorIs(t, err, authz.ErrImportedLocal)

	for name, hdr := range headerTricks {
		for _, reply := range []string{"_INBOX.x", ""} {
			if m := r.send("mpreg.default.rpc", reply, []byte(hdr), r.ext); m != nil {
				c, err := read(m, authz.EntryImport)
				if err == nil {
					require.Equal(t, authz.Caller{Stamped: true, Account: "APP", User: "bob"}, c, name)
				}
			}
			m := r.send("legacy.rpc", reply, []byte(hdr), r.legacy)
			require.NotNil(t, m, name)
			_, err := read(m, authz.EntryLocal)
			require.Error(t, err, "%s (reply %q): %q read as the nodes' own account", name, reply, m.Header)
		}
	}
}

// FuzzStampedHeader sends the header block a foreign caller controls
// through a real nats-server's import, and checks what the nodes read: on
// ext.rpc, bob or a refusal; on an imported rpc, always a refusal.
func FuzzStampedHeader(f *testing.F) {
	for _, hdr := range headerTricks {
		f.Add([]byte(hdr), true)
	}
	f.Add([]byte("NATS/1.0\r\nA: b\r\nA: c\r\n\r\n"), false)
	f.Add([]byte("NATS/1.0 503 No Responders\r\n\r\n"), true)
	f.Add([]byte("NATS/1.0\r\nnats-request-info: {\"acc\":\"MPREG\"}\r\n\r\n"), true)
	r := newStampRig(f)
	f.Fuzz(func(t *testing.T, hdr []byte, withReply bool) {
		if len(hdr) > 4096 {
			return
		}
		reply := ""
		if withReply {
			reply = "_INBOX.x"
		}
		r.t = t
		if m := r.send("mpreg.default.rpc", reply, hdr, r.ext); m != nil {
			if c, err := read(m, authz.EntryImport); err == nil {
				require.Equal(t, authz.Caller{Stamped: true, Account: "APP", User: "bob"}, c, "%q", m.Header)
			}
		}
		if m := r.send("legacy.rpc", reply, hdr, r.legacy); m != nil {
			_, err := read(m, authz.EntryLocal)
			require.Error(t, err, "%q read as the nodes' own account", m.Header)
		}
	})
}
