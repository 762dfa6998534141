package mesh

import (
	"bufio"
	"context"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mpreg/mpreg/bus"
	"github.com/nats-io/nats.go"
)

// Learning NATS servers from peers (docs/PROTOCOL.md §7, advertised_urls). A
// node or client that follows adds to its connection's server pool the
// URLs that live peers advertise, so that it can fail over to servers it
// was not told of and that NATS did not announce. That pool is what the
// connection tries on every reconnect, one connect timeout per dead
// address: a hello that named 60 addresses that accept TCP but never speak
// NATS once made reconnects take two minutes instead of one second. So a
// URL joins the pool only once it has been seen to answer as a NATS server
// does, it is checked again now and then, it leaves when no live peer
// advertises it any more, and at most maxLearned are kept.
const (
	maxLearned    = 8   // learned URLs in the pool at once
	maxProbed     = 256 // probe results remembered
	probesPerTurn = 4   // probes per learning turn
	probeTimeout  = 500 * time.Millisecond
	probeAgain    = time.Minute     // a result is trusted this long
	learnEvery    = 2 * time.Second // between learning turns
	probeBanner   = "INFO "         // what a NATS server says first
)

// serverPool keeps the learned part of a connection's server pool.
type serverPool struct {
	nc      *nats.Conn
	log     *slog.Logger
	learned map[string]bool        // hosts this pool added
	probed  map[string]probeResult // by host
	timeout time.Duration          // of one probe
}

type probeResult struct {
	ok bool
	at time.Time
}

func newServerPool(nc *nats.Conn, log *slog.Logger) *serverPool {
	return &serverPool{nc: nc, log: log, learned: map[string]bool{}, probed: map[string]probeResult{}, timeout: probeTimeout}
}

// turn probes a few advertised URLs and sets the connection's pool to its
// own servers plus the advertised URLs that answered as NATS servers.
func (p *serverPool) turn(ctx context.Context, advertised []string) {
	if !p.nc.IsConnected() {
		return // the pool is in use by the reconnect loop; next turn
	}
	pool := p.nc.Servers()
	own := make(map[string]bool, len(pool)) // not learned here: configured, or told by NATS
	for _, u := range pool {
		if h := hostOf(u); h != "" && !p.learned[h] {
			own[h] = true
		}
	}
	p.probe(ctx, advertised, own)
	var keep []string
	for _, u := range advertised {
		h := hostOf(u)
		if h == "" || own[h] || slices.Contains(keep, u) {
			continue
		}
		if p.probed[h].ok && len(keep) < maxLearned {
			keep = append(keep, u)
		}
	}
	learned := map[string]bool{}
	next := make([]string, 0, len(pool)+len(keep))
	for _, u := range pool {
		if own[hostOf(u)] {
			next = append(next, u)
		}
	}
	for _, u := range keep {
		learned[hostOf(u)] = true
		next = append(next, u)
	}
	if sameHosts(pool, next) {
		p.learned = learned
		return
	}
	if err := p.nc.SetServerPool(next); err != nil {
		p.log.Debug("advertised servers not taken", "error", err)
		return
	}
	p.learned = learned
	p.log.Info("NATS server pool updated from peers' advertised URLs", "servers", bus.RedactAll(next))
}

// probe checks, at the same time, up to probesPerTurn advertised hosts
// that were never probed or not for probeAgain.
func (p *serverPool) probe(ctx context.Context, advertised []string, own map[string]bool) {
	now := time.Now()
	var hosts []string
	for _, u := range advertised {
		h := hostOf(u)
		r, seen := p.probed[h]
		if h != "" && !own[h] && (!seen || now.Sub(r.at) > probeAgain) && !slices.Contains(hosts, h) {
			hosts = append(hosts, h)
		}
		if len(hosts) == probesPerTurn {
			break
		}
	}
	ok := make([]bool, len(hosts))
	var wg sync.WaitGroup
	for i, h := range hosts {
		wg.Add(1)
		go func() { // joined below, within p.timeout
			defer wg.Done()
			ok[i] = probeNATS(ctx, h, p.timeout)
		}()
	}
	wg.Wait()
	for i, h := range hosts {
		p.remember(h, probeResult{ok: ok[i], at: now})
	}
}

// remember stores a probe result, forgetting the oldest past maxProbed.
func (p *serverPool) remember(host string, r probeResult) {
	if _, ok := p.probed[host]; !ok && len(p.probed) >= maxProbed {
		oldest := ""
		for h, x := range p.probed {
			if oldest == "" || x.at.Before(p.probed[oldest].at) {
				oldest = h
			}
		}
		delete(p.probed, oldest)
	}
	p.probed[host] = r
}

// probeNATS reports whether host answers as a NATS server does: it accepts
// a TCP connection and sends an INFO line first, within timeout.
func probeNATS(ctx context.Context, host string, timeout time.Duration) bool {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return false
	}
	defer func() { _ = c.Close() }()
	dl, _ := ctx.Deadline()
	_ = c.SetReadDeadline(dl)
	line, err := bufio.NewReaderSize(c, 64).Peek(len(probeBanner))
	return err == nil && string(line) == probeBanner
}

// sameHosts reports whether two URL lists name the same hosts.
func sameHosts(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	seen := make(map[string]int, len(a))
	for _, u := range a {
		seen[hostOf(u)]++
	}
	for _, u := range b {
		if seen[hostOf(u)]--; seen[hostOf(u)] < 0 {
			return false
		}
	}
	return true
}

// hostOf returns the host:port of a NATS URL, or "" when it does not parse.
func hostOf(u string) string {
	if !strings.Contains(u, "://") {
		u = "nats://" + u
	}
	p, err := url.Parse(u)
	if err != nil || p.Host == "" {
		return ""
	}
	return p.Host
}
