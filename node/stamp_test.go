package node_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/mpreg/mpreg/bus"
	"github.com/mpreg/mpreg/codec"
	"github.com/mpreg/mpreg/internal/testcluster"
	"github.com/mpreg/mpreg/internal/testsecure"
	"github.com/mpreg/mpreg/internal/testwait"
	"github.com/mpreg/mpreg/node"
	"github.com/mpreg/mpreg/schema"
)

// rawCaller speaks the NATS protocol by hand, to send header blocks that
// nats.go would never write: the caller's side of a header trick.
type rawCaller struct {
	t       *testing.T
	conn    net.Conn
	rd      *bufio.Reader
	inbox   string
	seq     int
	pending [][]byte // messages read while waiting for a PONG
}

func dialRaw(t *testing.T, serverURL, user, pass, inbox string) *rawCaller {
	t.Helper()
	u, err := url.Parse(serverURL)
	require.NoError(t, err)
	conn, err := net.Dial("tcp", u.Host)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	r := &rawCaller{t: t, conn: conn, rd: bufio.NewReader(conn), inbox: inbox}
	_, err = r.rd.ReadString('\n') // INFO
	require.NoError(t, err)
	connect, err := json.Marshal(map[string]any{"user": user, "pass": pass, "headers": true, "verbose": false, "protocol": 1})
	require.NoError(t, err)
	r.write("CONNECT %s\r\nSUB %s.> 1\r\nPING\r\n", connect, inbox)
	r.expectPong()
	return r
}

func (r *rawCaller) write(format string, args ...any) {
	r.t.Helper()
	_, err := fmt.Fprintf(r.conn, format, args...)
	require.NoError(r.t, err)
}

// expectPong reads up to the server's PONG; an -ERR before it fails. A
// message delivered meanwhile (a reply can overtake the PONG) is kept for
// reply.
func (r *rawCaller) expectPong() {
	r.t.Helper()
	require.NoError(r.t, r.conn.SetReadDeadline(time.Now().Add(bound)))
	for {
		line, err := r.rd.ReadString('\n')
		require.NoError(r.t, err)
		require.False(r.t, strings.HasPrefix(line, "-ERR"), "the server refused: %s", line)
		if strings.HasPrefix(line, "PONG") {
			return
		}
		if payload, ok := r.payload(line); ok {
			r.pending = append(r.pending, payload)
		}
	}
}

// payload reads the payload of the message whose protocol line is line,
// without its header block; ok is false for any other line.
func (r *rawCaller) payload(line string) (data []byte, ok bool) {
	r.t.Helper()
	f := strings.Fields(line)
	var hdrLen, total int
	var err error
	switch {
	case len(f) >= 4 && f[0] == "MSG":
		total, err = strconv.Atoi(f[len(f)-1])
	case len(f) >= 5 && f[0] == "HMSG":
		hdrLen, err = strconv.Atoi(f[len(f)-2])
		if err == nil {
			total, err = strconv.Atoi(f[len(f)-1])
		}
	default:
		return nil, false // PING, PONG, +OK
	}
	require.NoError(r.t, err)
	buf := make([]byte, total+2)
	_, err = io.ReadFull(r.rd, buf)
	require.NoError(r.t, err)
	return buf[hdrLen:total], true
}

// publish sends hdr and body on subject, with a reply subject in the
// caller's inbox when reply is set (returned).
func (r *rawCaller) publish(subject string, hdr, body string, reply bool) string {
	r.t.Helper()
	to := ""
	if reply {
		r.seq++
		to = r.inbox + "." + strconv.Itoa(r.seq)
	}
	r.write("HPUB %s %s %d %d\r\n%s%s\r\nPING\r\n", subject, to, len(hdr), len(hdr)+len(body), hdr, body)
	r.expectPong()
	return to
}

// reply returns the next message delivered to the caller's inbox, without
// its header block.
func (r *rawCaller) reply() []byte {
	r.t.Helper()
	if len(r.pending) > 0 {
		m := r.pending[0]
		r.pending = r.pending[1:]
		return m
	}
	require.NoError(r.t, r.conn.SetReadDeadline(time.Now().Add(bound)))
	for {
		line, err := r.rd.ReadString('\n')
		require.NoError(r.t, err)
		if payload, ok := r.payload(line); ok {
			return payload
		}
	}
}

// TestStampTricksRefused: bob publishes, by hand, the header blocks that
// make nats.go drop or hide the stamp NATS adds at the import. His add is
// refused as it is with a well-formed header, and his cancel of alice's
// request is ignored and counted, whether the header block ends or not.
func TestStampTricksRefused(t *testing.T) {
	f := newAuthzFixture(t)
	bob := dialRaw(t, f.url, "bob", bobPass, bobInbox)
	tricks := map[string]string{
		"line without colon": "NATS/1.0\r\nGarbageLineWithoutColon\r\n\r\n",
		"short status line":  "NATS/1.0 1\r\n\r\n",
		"no blank line":      "NATS/1.0\r\nX-Evil: a\r\n",
		"open empty key":     "NATS/1.0\r\n:\r\n",
	}
	body := `{"cmds": [{"name": "x", "fun": "add", "args": [2, 3]}]}`
	for name, hdr := range tricks {
		bob.publish(rpcSubject, hdr, body, true)
		var resp map[string]any
		require.NoError(t, json.Unmarshal(bob.reply(), &resp), name)
		require.Equal(t, string(schema.CodePermissionDenied), wireError(t, resp)["code"], name)
	}
	require.Zero(t, f.calls.Load(), "a refused add ran")

	// A request published with no reply subject is refused as well: it
	// must not run for its side effects.
	for _, hdr := range tricks {
		bob.publish(rpcSubject, hdr, body, false)
	}
	alice := f.client(t, "alice", false)
	done := make(chan error, 1)
	go func() {
		_, err := alice.Run(context.Background(), &schema.Request{ID: "alice-req", Cmds: []schema.Command{{Name: "s", Fun: "slow", Args: []any{"alice-req"}}}})
		done <- err
	}()
	testwait.Recv(t, f.slow.started, "alice's step to start")
	for _, hdr := range tricks {
		bob.publish("mpreg.default.cancel", hdr, `{"id": "alice-req"}`, false)
	}
	testwait.For(t, "bob's cancels to be refused", func() error {
		if n := f.node.Stats().CancelsRefused; n != int64(len(tricks)) {
			return fmt.Errorf("%d refused", n)
		}
		return nil
	})
	f.slow.Release()
	require.NoError(t, testwait.Recv(t, done, "alice's request"), "bob's cancel stopped alice's request")
	require.Zero(t, f.calls.Load(), "a refused add ran")
}

// TestStampRequiredOnExt: a request on an ext subject without NATS's
// stamp (from inside the nodes' account) is refused; so is a stamped one
// on rpc itself (a deployment that exports rpc), with a message that says
// what to export instead.
func TestStampRequiredOnExt(t *testing.T) {
	f := newAuthzFixture(t)
	local := f.dial(t, "node")
	body := []byte(`{"cmds": [{"name": "x", "fun": "add", "args": [2, 3]}]}`)
	e := wireError(t, decodeAs(t, request(t, local, "mpreg.default.ext.rpc", body, jsonHeader()), codec.JSONType))
	require.Equal(t, string(schema.CodePermissionDenied), e["code"])
	require.Contains(t, e["message"], "carries no Nats-Request-Info stamp")
	resp := decodeAs(t, request(t, local, rpcSubject, body, jsonHeader()), codec.JSONType)
	require.EqualValues(t, 5, resp["results"].(map[string]any)["x"])

	srv := testsecure.Server(t, `accounts {
  MPREG { users: [{user: node, password: "p"}], exports: [{service: "mpreg.default.rpc"}] }
  APP { users: [{user: bob, password: "p"}], imports: [{service: {account: MPREG, subject: "mpreg.default.rpc"}, share: true}] }
}`)
	dial := func(user string) *nats.Conn {
		return testcluster.Conn(t, srv.ClientURL(), testcluster.WithConnConfig(bus.ConnConfig{
			Servers: []string{srv.ClientURL()}, Auth: bus.Auth{User: user, Password: "p"}}))
	}
	testcluster.StartNode(t, dial("node"), testcluster.NodeConfig(t, "n1"), func(n *node.Node) {
		require.NoError(t, n.Register("add", func(a, b int64) int64 { return a + b }))
	})
	e = wireError(t, decodeAs(t, request(t, dial("bob"), rpcSubject, body, jsonHeader()), codec.JSONType))
	require.Equal(t, string(schema.CodePermissionDenied), e["code"])
	require.Contains(t, e["message"], "export the ext.rpc and ext.cancel subjects")
	require.Equal(t, "bob", details(t, e)["user"])
}
