package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/mpreg/mpreg/internal/lograte"
)

// ErrInvalidConfig wraps every configuration error of package bus.
var ErrInvalidConfig = errors.New("bus: invalid config")

// ConnConfig configures a client connection. Zero fields take the defaults.
type ConnConfig struct {
	// Servers are the NATS URLs to try. Default nats://127.0.0.1:4222.
	Servers []string
	// InProcess, when set, connects to this embedded server without TCP;
	// Servers are then ignored and the connection cannot fail over.
	InProcess *server.Server
	// Name is the connection name shown by the server.
	Name string
	// ReconnectWait is the first reconnect delay; it doubles per attempt up
	// to MaxReconnectWait, with ±25% jitter. Default 250 ms.
	ReconnectWait time.Duration
	// MaxReconnectWait caps the reconnect delay. Default 5 s.
	MaxReconnectWait time.Duration
	// MaxReconnects bounds reconnect attempts; 0 means unlimited.
	MaxReconnects int
	// Auth is the identity shown to NATS and the TLS settings.
	Auth Auth
	// InboxPrefix replaces "_INBOX" as the prefix of every reply subject
	// the connection subscribes (nats.CustomInboxPrefix): a NATS user
	// allowed to subscribe only "_INBOX_alice.>" connects with
	// "_INBOX_alice". At most MaxPrefix bytes of subject tokens. Default
	// "_INBOX".
	InboxPrefix string
	// Options are appended to the defaults and Auth's options (handlers,
	// or auth and TLS options of nats.go that Auth does not name).
	Options []nats.Option
	// Logger logs connection state changes. Default: discard.
	Logger *slog.Logger
}

// DefaultURL is the NATS URL used when none is given.
const DefaultURL = "nats://127.0.0.1:4222"

// SplitURLs splits comma-separated URL lists and drops empty entries.
func SplitURLs(in ...string) []string {
	var out []string
	for _, s := range in {
		for _, u := range strings.Split(s, ",") {
			if u = strings.TrimSpace(u); u != "" {
				out = append(out, u)
			}
		}
	}
	return out
}

// Backoff returns the delay before reconnect attempt n (1-based): base
// doubled per attempt, capped at max, with ±25% jitter.
func Backoff(n int, base, ceiling time.Duration) time.Duration {
	d := base
	for i := 1; i < n && d < ceiling; i++ {
		d *= 2
	}
	if d > ceiling {
		d = ceiling
	}
	j := time.Duration(float64(d) * (rand.Float64()*0.5 - 0.25))
	return d + j
}

// Connect opens a NATS connection that retries a failed first connect and
// reconnects with exponential backoff, logging each state change. It waits
// until the connection is up or ctx is done.
func Connect(ctx context.Context, cfg ConnConfig) (*nats.Conn, error) {
	cfg, log := cfg.withDefaults()
	var conn atomic.Pointer[nats.Conn] // for the reconnect delay, once dialed
	url, opts, err := cfg.dialOptions(log, &conn)
	if err != nil {
		return nil, err
	}
	// Handlers the caller set in cfg.Options are chained, not replaced:
	// ours come last (a later option wins) and call theirs first.
	var user nats.Options
	for _, o := range cfg.Options {
		_ = o(&user)
	}
	connected := make(chan struct{}, 1)
	opts = append(opts, handlerOptions(user, log, connected)...)
	nc, err := nats.Connect(url, opts...)
	conn.Store(nc)
	if err != nil {
		return nil, fmt.Errorf("bus: connect %s: %w", strings.Join(RedactAll([]string{url}), ","), err)
	}
	return waitConnected(ctx, nc, url, connected)
}

// withDefaults returns cfg with its zero reconnect settings set, and its
// logger.
func (cfg ConnConfig) withDefaults() (ConnConfig, *slog.Logger) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.ReconnectWait <= 0 {
		cfg.ReconnectWait = 250 * time.Millisecond
	}
	if cfg.MaxReconnectWait <= 0 {
		cfg.MaxReconnectWait = 5 * time.Second
	}
	return cfg, log
}

// dialOptions returns the URL to dial and the options of cfg but the
// handlers: name, reconnects and their backoff, in-process or TCP servers,
// Auth, the inbox prefix and cfg.Options. conn is read by the reconnect
// delay, to say why a server refused the connection.
func (cfg ConnConfig) dialOptions(log *slog.Logger, conn *atomic.Pointer[nats.Conn]) (string, []nats.Option, error) {
	authOpts, err := cfg.Auth.Options()
	if err != nil {
		return "", nil, err
	}
	if cfg.InboxPrefix != "" {
		if err := checkInboxPrefix(cfg.InboxPrefix); err != nil {
			return "", nil, err
		}
		authOpts = append(authOpts, nats.CustomInboxPrefix(cfg.InboxPrefix))
	}
	maxRe := cfg.MaxReconnects
	if maxRe == 0 {
		maxRe = -1
	}
	opts := []nats.Option{
		nats.Name(cfg.Name),
		nats.MaxReconnects(maxRe),
		// Credentials refused twice would otherwise close the connection
		// for good; a node keeps trying (with backoff) until an operator
		// fixes them, and says why at each attempt.
		nats.IgnoreAuthErrorAbort(),
		nats.CustomReconnectDelay(func(attempts int) time.Duration {
			d := Backoff(attempts, cfg.ReconnectWait, cfg.MaxReconnectWait)
			// nats.go reports an attempt that reached a server which then
			// refused it (credentials, TLS) to no handler while it has
			// never connected: say it here, once per backoff step.
			if nc := conn.Load(); nc != nil {
				if why, ok := ExplainConnectError(nc.LastError()); ok {
					log.Warn("nats refused the connection; trying again", "why", why, "error", nc.LastError(), "retry_in", d.Round(time.Millisecond))
				}
			}
			return d
		}),
	}
	var url string
	if cfg.InProcess != nil {
		opts = append(opts, nats.InProcessServer(cfg.InProcess))
	} else {
		servers := SplitURLs(cfg.Servers...)
		if len(servers) == 0 {
			servers = []string{DefaultURL}
		}
		url = strings.Join(servers, ",")
		opts = append(opts, nats.RetryOnFailedConnect(true))
	}
	opts = append(opts, authOpts...)
	return url, append(opts, cfg.Options...), nil
}

// handlerOptions are the connection's handlers: each calls the caller's
// (user's) first, then logs; the connect handler also signals connected.
func handlerOptions(user nats.Options, log *slog.Logger, connected chan<- struct{}) []nats.Option {
	return []nats.Option{
		nats.ConnectHandler(func(nc *nats.Conn) {
			call(user.ConnectedCB, nc)
			log.Info("nats connected", "url", Redact(nc.ConnectedUrl()))
			select {
			case connected <- struct{}{}:
			default:
			}
		}),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if user.DisconnectedErrCB != nil {
				user.DisconnectedErrCB(nc, err)
			} else {
				call(user.DisconnectedCB, nc)
			}
			if err != nil {
				log.Warn("nats disconnected", "error", err)
			} else {
				log.Debug("nats disconnected")
			}
		}),
		nats.ReconnectErrHandler(func(nc *nats.Conn, err error) {
			if user.ReconnectErrCB != nil {
				user.ReconnectErrCB(nc, err)
			}
			// Each failed attempt, at most one per MaxReconnectWait once the
			// backoff has grown: an operator sees why nothing happens.
			log.Warn("nats connect attempt failed", "servers", RedactAll(nc.Servers()), "error", err)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			call(user.ReconnectedCB, nc)
			log.Info("nats reconnected", "url", Redact(nc.ConnectedUrl()))
		}),
		nats.ClosedHandler(func(nc *nats.Conn) {
			call(user.ClosedCB, nc)
			if err := nc.LastError(); err != nil {
				log.Warn("nats connection closed", "error", err)
			} else {
				log.Debug("nats connection closed")
			}
		}),
		nats.ErrorHandler(asyncErrorHandler(user.AsyncErrorCB, log)),
	}
}

// asyncErrorHandler logs the connection's async errors after calling the
// caller's handler (theirs, when set).
func asyncErrorHandler(theirs nats.ErrHandler, log *slog.Logger) nats.ErrHandler {
	var badHeaders lograte.Limiter // messages whose header does not decode
	return func(nc *nats.Conn, s *nats.Subscription, err error) {
		if theirs != nil {
			theirs(nc, s, err)
		}
		subj := ""
		if s != nil {
			subj = s.Subject
		}
		if errors.Is(err, nats.ErrBadHeaderMsg) {
			// A sender chose the header: many of them must not flood the log.
			if ok, held := badHeaders.Allow("bad header"); ok {
				log.Warn("a message whose header block does not decode", "subject", subj, "dropped_since_last_log", held)
			}
			return
		}
		log.Error("nats async error", "subject", subj, "error", err)
	}
}

// waitConnected returns nc once it is connected, or closes it when ctx
// ends first.
func waitConnected(ctx context.Context, nc *nats.Conn, url string, connected <-chan struct{}) (*nats.Conn, error) {
	if nc.IsConnected() {
		return nc, nil
	}
	select {
	case <-connected:
		return nc, nil
	case <-ctx.Done():
		last := nc.LastError()
		nc.Close()
		if last != nil {
			return nil, fmt.Errorf("bus: connect %s: %w (last attempt: %w)", strings.Join(RedactAll([]string{url}), ","), ctx.Err(), last)
		}
		return nil, fmt.Errorf("bus: connect %s: %w", strings.Join(RedactAll([]string{url}), ","), ctx.Err())
	}
}

// call calls a connection handler the caller set, if any.
func call(h nats.ConnHandler, nc *nats.Conn) {
	if h != nil {
		h(nc)
	}
}

// NewMsg builds a message with Content-Type (and Accept when not empty).
// The headers of the common combinations are shared, read-only maps: do not
// modify the Header of a message from NewMsg.
func NewMsg(subject string, data []byte, contentType, accept string) *nats.Msg {
	h, ok := sharedHeaders[[2]string{contentType, accept}]
	if !ok {
		h = nats.Header{"Content-Type": []string{contentType}}
		if accept != "" {
			h["Accept"] = []string{accept}
		}
	}
	return &nats.Msg{Subject: subject, Data: data, Header: h}
}

// sharedHeaders holds the headers of every pairing of the codecs' media
// types, built once.
var sharedHeaders = func() map[[2]string]nats.Header {
	types := []string{"application/json", "application/msgpack"}
	out := map[[2]string]nats.Header{}
	for _, ct := range types {
		out[[2]string{ct, ""}] = nats.Header{"Content-Type": []string{ct}}
		for _, a := range types {
			out[[2]string{ct, a}] = nats.Header{"Content-Type": []string{ct}, "Accept": []string{a}}
		}
	}
	return out
}()

// HeaderBytes is the size of the raw header block of a received message,
// 0 when it had none. nats.go hands over a message whose header block does
// not decode with a nil Header: this tells such a message from one that
// had no header at all.
func HeaderBytes(m *nats.Msg) int {
	return max(m.Size()-len(m.Subject)-len(m.Reply)-len(m.Data), 0)
}

// Header returns the first value of a header, matched exactly first and
// then without regard to case (NATS headers are case-sensitive maps, but
// callers from other languages may write "content-type").
func Header(m *nats.Msg, key string) string {
	if m.Header == nil {
		return ""
	}
	if v, ok := m.Header[key]; ok && len(v) > 0 {
		return v[0]
	}
	for k, v := range m.Header {
		if len(v) > 0 && strings.EqualFold(k, key) {
			return v[0]
		}
	}
	return ""
}

// Fits reports whether a message of data bytes plus headers fits the
// connection's maximum payload.
func Fits(nc *nats.Conn, m *nats.Msg) bool {
	size := len(m.Data)
	for k, vs := range m.Header {
		for _, v := range vs {
			size += headerLine(k, v)
		}
	}
	return fits(nc, size)
}

// FitsWith is Fits for a message of n bytes of data and a header of the
// given key and value pairs, without the message built.
func FitsWith(nc *nats.Conn, n int, kv ...string) bool {
	for i := 0; i+1 < len(kv); i += 2 {
		n += headerLine(kv[i], kv[i+1])
	}
	return fits(nc, n)
}

// headerLine is the size of one header line.
func headerLine(k, v string) int { return len(k) + len(v) + 4 }

// fits reports whether size bytes, with the header's own framing, fit
// nc's maximum payload.
func fits(nc *nats.Conn, size int) bool { return int64(size+16) <= nc.MaxPayload() }

// Flush flushes nc and waits for the server's reply until ctx is done, or
// for at most 10 s when ctx has no deadline.
func Flush(ctx context.Context, nc *nats.Conn) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
	}
	return nc.FlushWithContext(ctx)
}
