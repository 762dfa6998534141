package node

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/mpreg/mpreg/bus"
	"github.com/mpreg/mpreg/codec"
	"github.com/mpreg/mpreg/internal/lograte"
)

// env is what the parts of a node share: its configuration, connection,
// subjects, logs, and lifecycle.
type env struct {
	cfg  Config
	nc   *nats.Conn
	subj bus.Subjects
	log  *slog.Logger
	logs lograte.Limiter // for events a peer can cause at will
	lifecycle
}

// lifecycle is the state of a node's life: started, draining, closing,
// done, and why it stopped on its own.
type lifecycle struct {
	ctx      context.Context // cancelled by Close
	cancel   context.CancelFunc
	done     chan struct{}
	err      atomic.Pointer[error] // why the node stopped on its own
	status   chan nats.Status      // the connection's CLOSED event; see watchConn
	watched  chan struct{}         // closed when watchConn returns
	started  atomic.Bool
	serving  atomic.Bool // Start has finished
	draining atomic.Bool
	closing  atomic.Bool
}

// pool is a node's owned goroutines: workers that take work from goOwned
// and exit when idle, and the count of work in flight that Drain waits on.
type pool struct {
	mu      sync.RWMutex // guards wg.Add against closing
	wg      sync.WaitGroup
	work    tracker // requests and steps in flight, for Drain
	quit    chan struct{}
	handoff chan func() // to an idle worker; see goOwned
}

// replyFailed logs a reply that could not be sent (the connection is down,
// or the request named a reply subject that is too long), at most once a
// second for each kind of message.
func (e *env) replyFailed(kind, id string, err error) {
	if ok, held := e.logs.Allow(kind + " reply failed"); ok {
		e.log.Warn(kind+" reply failed", "request_id", id, "error", err, "failed_since_last_log", held)
	}
}

// publish sends a message in JSON, which every peer reads.
func (e *env) publish(subject string, v any) {
	data, err := codec.JSON.Encode(v)
	if err == nil {
		err = e.nc.PublishMsg(bus.NewMsg(subject, data, codec.JSONType, ""))
	}
	if err != nil {
		e.log.Warn("publish failed", "subject", subject, "error", err)
	}
}

// goOwned runs f on a goroutine the node waits for on Close; it returns
// false, running nothing, once the node is closing.
func (x *executor) goOwned(f func()) bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	if x.closing.Load() {
		return false
	}
	select {
	case x.handoff <- f: // an idle worker takes it
		return true
	default:
	}
	x.wg.Add(1)
	go x.worker(f)
	return true
}

// worker runs f, then whatever goOwned hands over, until it has been idle
// for workerIdle or the node closes. Reusing goroutines keeps their grown
// stacks: a fresh goroutine per message grows (copies) its stack on every
// request, a large share of a call's CPU time.
func (x *executor) worker(f func()) {
	defer x.wg.Done()
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		f()
		idle.Reset(workerIdle)
		select {
		case f = <-x.handoff:
		case <-idle.C:
			return
		case <-x.quit:
			return
		}
	}
}

// tracker counts work in flight and signals when none is left.
type tracker struct {
	mu sync.Mutex
	n  int
	// zero is made by idle while work is in flight, and closed (and
	// cleared) when none is left: work that nobody waits for allocates
	// nothing.
	zero chan struct{}
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func (t *tracker) add() {
	t.mu.Lock()
	t.n++
	t.mu.Unlock()
}

func (t *tracker) done() {
	t.mu.Lock()
	t.n--
	if t.n == 0 && t.zero != nil {
		close(t.zero)
		t.zero = nil
	}
	t.mu.Unlock()
}

// idle returns a channel closed when no work is in flight.
func (t *tracker) idle() <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.n == 0 {
		return closedChan
	}
	if t.zero == nil {
		t.zero = make(chan struct{})
	}
	return t.zero
}

// workerIdle is how long a worker goroutine waits for more work before it
// exits.
const workerIdle = 2 * time.Second
