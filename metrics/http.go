package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Probes are the checks behind /healthz and /readyz: each returns nil when
// the process is live (ready), or why not. A nil probe always passes.
type Probes struct {
	// Live: the process runs and its NATS connection (or embedded server)
	// is up.
	Live func() error
	// Ready: the node serves and has synced the cluster; not while it
	// drains.
	Ready func() error
}

// Server is the HTTP server of /metrics, /healthz and /readyz.
type Server struct {
	srv  *http.Server
	addr string
	done chan error
}

// Serve listens on addr ("HOST:PORT"; port 0 picks a free one) and serves
// reg's metrics and the probes until Close.
func Serve(addr string, reg *prometheus.Registry, p Probes, log *slog.Logger) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: listen %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg, ErrorLog: slogErrors{log}}))
	mux.Handle("GET /healthz", probe(p.Live))
	mux.Handle("GET /readyz", probe(p.Ready))
	s := &Server{
		srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
			WriteTimeout: 30 * time.Second, IdleTimeout: time.Minute, MaxHeaderBytes: 16 << 10},
		addr: ln.Addr().String(),
		done: make(chan error, 1),
	}
	go func() { s.done <- s.srv.Serve(ln) }() // owned: Close stops it and waits
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.addr }

// Close stops the server, letting requests in progress finish until ctx
// ends, and waits for it.
func (s *Server) Close(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if err != nil {
		_ = s.srv.Close()
	}
	if serr := <-s.done; !errors.Is(serr, http.ErrServerClosed) {
		return serr
	}
	return err
}

// probe answers 200 "ok" when check passes, else 503 with the reason.
func probe(check func() error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if check != nil {
			if err := check(); err != nil {
				w.WriteHeader(http.StatusServiceUnavailable)
				_, _ = fmt.Fprintln(w, err.Error())
				return
			}
		}
		_, _ = fmt.Fprintln(w, "ok")
	})
}

// slogErrors is promhttp's error log over slog.
type slogErrors struct{ l *slog.Logger }

func (e slogErrors) Println(v ...any) {
	if e.l != nil {
		e.l.Error("metrics: " + fmt.Sprint(v...))
	}
}
