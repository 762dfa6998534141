package node

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mpreg/mpreg/bus"
)

// JetStreamState is what a node knows of JetStream on its connection,
// found out once at Start (see Node.JetStream).
type JetStreamState int32

// The JetStream states.
const (
	// JetStreamUnknown: the node has not started, or its probe has not
	// answered yet.
	JetStreamUnknown JetStreamState = iota
	// JetStreamAvailable: JetStream serves the connection's account.
	JetStreamAvailable
	// JetStreamAbsent: no JetStream for the connection's account (or no
	// answer within Config.Objects.JetStreamProbe).
	JetStreamAbsent
)

// String is "unknown", "available" or "absent".
func (s JetStreamState) String() string {
	switch s {
	case JetStreamAvailable:
		return "available"
	case JetStreamAbsent:
		return "absent"
	default:
		return "unknown"
	}
}

// JetStreamProbeWait bounds one ask of the probe for JetStream that Start
// begins, beside the start, which does not wait for it. A server without
// JetStream answers "no responders" at once; a JetStream cluster that has
// no meta leader yet does not answer, or says it is not available, and is
// asked again until Config.Objects.JetStreamProbe has passed.
const JetStreamProbeWait = 2 * time.Second

// jetStreamRetry is the pause before asking a JetStream cluster that said
// it is not available again.
const jetStreamRetry = 250 * time.Millisecond

// jetStream is the node's knowledge of JetStream.
type jetStream struct {
	state atomic.Int32  // a JetStreamState
	known chan struct{} // closed by ended
	once  sync.Once
}

// ended closes known, once.
func (j *jetStream) ended() { j.once.Do(func() { close(j.known) }) }

// JetStream returns what the node knows of JetStream on its connection:
// JetStreamUnknown until the probe that Start begins has answered, then
// JetStreamAvailable or JetStreamAbsent. It does not wait; see
// JetStreamKnown.
func (n *Node) JetStream() JetStreamState { return JetStreamState(n.js.state.Load()) }

// JetStreamKnown is closed when the probe for JetStream has ended: within
// Config.Objects.JetStreamProbe of Start, or when the node closes first (JetStream
// then stays JetStreamUnknown, as it does for a node closed unstarted).
func (n *Node) JetStreamKnown() <-chan struct{} { return n.js.known }

// probeJetStream finds out whether JetStream serves the node's account
// and logs what it found, once.
func (n *Node) probeJetStream() {
	defer n.js.ended()
	started := time.Now()
	info, err := n.askJetStream()
	took := time.Since(started).Round(time.Microsecond)
	switch {
	case err == nil:
		n.js.state.Store(int32(JetStreamAvailable))
		n.log.Info("JetStream available", "domain", info.Domain, "api_level", info.API.Level,
			"max_storage", info.Limits.MaxStore, "max_memory", info.Limits.MaxMemory, "streams", info.Streams, "took", took)
		n.executor.objs.open(n.ctx, n.nc) // before the probe ends: steps that need the bucket wait for it
		n.front.dur.open(n.ctx, n.nc)
	case n.ctx.Err() != nil:
		// The node closed first: nothing was found out.
	case errors.Is(err, bus.ErrNoJetStream), errors.Is(err, bus.ErrJetStreamSilent):
		n.js.state.Store(int32(JetStreamAbsent))
		n.log.Info("JetStream absent: values too large for a message cannot be passed by reference", "reason", err.Error(), "took", took)
	default:
		n.js.state.Store(int32(JetStreamAbsent))
		n.log.Warn("JetStream probe failed: taken as absent", "error", err, "took", took)
	}
}

// askJetStream asks until JetStream answers, is found absent, or
// Config.Objects.JetStreamProbe has passed while it stayed silent.
func (n *Node) askJetStream() (*jetstream.AccountInfo, error) {
	window, cancel := context.WithTimeout(n.ctx, n.cfg.Objects.JetStreamProbe)
	defer cancel()
	for {
		ctx, cancelTry := context.WithTimeout(window, JetStreamProbeWait)
		info, err := bus.ProbeJetStream(ctx, n.nc)
		cancelTry()
		if !errors.Is(err, bus.ErrJetStreamSilent) || window.Err() != nil {
			return info, err
		}
		if ctx.Err() == nil { // an answer, "not available": pause before the next
			select {
			case <-time.After(jetStreamRetry):
			case <-window.Done():
				return nil, err
			}
		}
	}
}
