package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mpreg/mpreg/membership"
)

// watchRefresh is how often peers --watch looks again without a change
// event: liveness and load change without one.
const watchRefresh = time.Second

// peerState is what peers --watch compares between two looks.
type peerState struct {
	state       string // alive or dead
	inflight    int64
	limit       int64
	incarnation int64
	funs        string
	lastHeard   time.Time
	name        string
}

func snapshot(peers []membership.Peer) map[string]peerState {
	out := make(map[string]peerState, len(peers))
	for _, p := range peers {
		st := "alive"
		if !p.Alive {
			st = "dead"
		}
		out[p.Hello.Node] = peerState{state: st, inflight: p.Load.Inflight, limit: p.Load.Limit,
			incarnation: p.Hello.Incarnation, funs: funsByLocs(p.Hello.Funs), lastHeard: p.LastHeard, name: p.Hello.Meta["name"]}
	}
	return out
}

// watch follows the cluster's gossip until the first signal (exit 0).
func (c *peersCmd) watch(e *env) error {
	ctx, cancel := context.WithTimeout(e.ctx, peersTimeout)
	cl, err := dial(ctx, c.clientFlags, "", peersTimeout, true)
	cancel()
	if err != nil {
		return err
	}
	defer cl.Close()
	tty := isTerminal(e.stdout)
	t := time.NewTicker(watchRefresh)
	defer t.Stop()
	var prev map[string]peerState
	for {
		changed := cl.Table().Changed()
		now := time.Now()
		cur := snapshot(cl.Table().Peers())
		if tty {
			drawPeers(e.stdout, cur, prev, now)
		} else {
			printChanges(e.stdout, prev, cur, now)
		}
		prev = cur
		select {
		case <-e.ctx.Done():
			return nil
		case <-changed:
		case <-t.C:
		}
	}
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// drawPeers clears the terminal and draws the peers, rows that changed
// since prev in bold.
func drawPeers(w io.Writer, cur, prev map[string]peerState, now time.Time) {
	var b strings.Builder
	b.WriteString("\x1b[H\x1b[2J")
	fmt.Fprintf(&b, "mpreg peers --watch   %s   %d nodes   (Ctrl-C to end)\n\n", now.Format("15:04:05"), len(cur))
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tNAME\tSTATE\tINFLIGHT\tLAST HEARD\tFUNCTIONS [LOCS]")
	for _, id := range sortedIDs(cur) {
		p := cur[id]
		old, seen := prev[id]
		bold, reset := "", ""
		if prev != nil && (!seen || old.state != p.state || old.inflight != p.inflight || old.funs != p.funs || old.incarnation != p.incarnation) {
			bold, reset = "\x1b[1m", "\x1b[0m"
		}
		fmt.Fprintf(tw, "%s%s\t%s\t%s\t%d/%s\t%.1fs ago\t%s%s\n", bold, id, orDash(p.name), p.state, p.inflight, limitText(p.limit),
			now.Sub(p.lastHeard).Seconds(), p.funs, reset)
	}
	_ = tw.Flush()
	_, _ = io.WriteString(w, b.String())
}

// printChanges writes one line per change from prev to cur; the first look
// (prev nil) lists every node as joined.
func printChanges(w io.Writer, prev, cur map[string]peerState, now time.Time) {
	at := now.UTC().Format(time.RFC3339)
	for _, id := range sortedIDs(cur) {
		p := cur[id]
		old, seen := prev[id]
		switch {
		case !seen:
			fmt.Fprintf(w, "%s %s joined: %s, inflight %d/%s, funs %s\n", at, id, p.state, p.inflight, limitText(p.limit), p.funs)
		case old.incarnation != p.incarnation:
			fmt.Fprintf(w, "%s %s restarted: %s, funs %s\n", at, id, p.state, p.funs)
		default:
			if old.state != p.state {
				fmt.Fprintf(w, "%s %s %s -> %s\n", at, id, old.state, p.state)
			}
			if old.funs != p.funs {
				fmt.Fprintf(w, "%s %s funs %s\n", at, id, p.funs)
			}
			if old.inflight != p.inflight {
				fmt.Fprintf(w, "%s %s inflight %d -> %d\n", at, id, old.inflight, p.inflight)
			}
			if old.limit != p.limit {
				fmt.Fprintf(w, "%s %s limit %s -> %s\n", at, id, limitText(old.limit), limitText(p.limit))
			}
		}
	}
	for _, id := range sortedIDs(prev) {
		if _, ok := cur[id]; !ok {
			fmt.Fprintf(w, "%s %s left\n", at, id)
		}
	}
}

// limitText is a node's limit of steps in flight, "?" until a heartbeat
// said it: a node learned from its hello (a sync reply) has no load yet.
func limitText(limit int64) string {
	if limit <= 0 {
		return "?"
	}
	return strconv.FormatInt(limit, 10)
}

func sortedIDs(m map[string]peerState) []string {
	ids := make([]string, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}
