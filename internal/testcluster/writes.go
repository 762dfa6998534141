package testcluster

import (
	"net"
	"sync/atomic"

	"github.com/nats-io/nats-server/v2/server"
)

// WriteCounter dials connections (nats.CustomDialer, or in process with
// nats.InProcessServer when Srv is set) that count their writes: on TCP,
// the write syscalls nats.go's flusher makes; in process, the writes to
// the pipe the server reads.
type WriteCounter struct {
	Writes atomic.Int64
	Srv    *server.Server // for InProcessConn
}

// Dial dials TCP, with Timeout.
func (w *WriteCounter) Dial(network, address string) (net.Conn, error) {
	c, err := (&net.Dialer{Timeout: Timeout}).Dial(network, address)
	if err != nil {
		return nil, err
	}
	return countedConn{Conn: c, writes: &w.Writes}, nil
}

// InProcessConn connects to Srv in process.
func (w *WriteCounter) InProcessConn() (net.Conn, error) {
	c, err := w.Srv.InProcessConn()
	if err != nil {
		return nil, err
	}
	return countedConn{Conn: c, writes: &w.Writes}, nil
}

type countedConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c countedConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}
