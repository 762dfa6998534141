package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mpreg/mpreg/membership"
	"github.com/mpreg/mpreg/schema"
)

// peersTimeout bounds connecting and syncing for `mpreg peers`.
const peersTimeout = 10 * time.Second

// peersCmd is `mpreg peers`.
type peersCmd struct {
	JSON  bool `help:"Print a JSON list instead of a table."`
	Watch bool `help:"Keep watching: on a terminal, a table redrawn on every change (changed rows in bold); otherwise one line per change. Ctrl-C ends it."`
	clientFlags
}

// peerJSON is one node in `mpreg peers --json`.
type peerJSON struct {
	Node           string              `json:"node"`
	Name           string              `json:"name,omitempty"`
	Alive          bool                `json:"alive"`
	LastHeard      time.Time           `json:"last_heard"`
	LastHeardAgoMS int64               `json:"last_heard_ago_ms"`
	Funs           map[string][]string `json:"funs"`
	Codecs         []string            `json:"codecs"`
	AdvertisedURLs []string            `json:"advertised_urls"`
	Incarnation    int64               `json:"incarnation"`
	Version        int64               `json:"version"`
	Load           schema.Load         `json:"load"`
	Meta           map[string]string   `json:"meta,omitempty"`
}

// Run asks the cluster for its nodes and prints them.
func (c *peersCmd) Run(e *env) error {
	if c.Watch {
		return c.watch(e)
	}
	ctx, cancel := context.WithTimeout(e.ctx, peersTimeout)
	defer cancel()
	cl, err := connect(ctx, c.clientFlags, "", peersTimeout)
	if err != nil {
		return err
	}
	defer cl.Close()
	peers, err := cl.Peers(ctx)
	if err != nil {
		return err
	}
	now := time.Now()
	if len(peers) == 0 && !c.auth().IsZero() {
		fmt.Fprintln(e.stderr, "mpreg: no node answered; a caller in another NATS account than the nodes' sees none (their gossip and info subjects are not exported to it)")
	}
	if c.JSON {
		out := make([]peerJSON, len(peers))
		for i, p := range peers {
			out[i] = peerJSON{
				Node: p.Hello.Node, Name: p.Hello.Meta["name"], Alive: p.Alive,
				LastHeard: p.LastHeard.UTC(), LastHeardAgoMS: now.Sub(p.LastHeard).Milliseconds(),
				Funs: p.Hello.Funs, Codecs: p.Hello.Codecs, AdvertisedURLs: p.Hello.AdvertisedURLs,
				Incarnation: p.Hello.Incarnation, Version: p.Hello.Version, Load: p.Load, Meta: p.Hello.Meta,
			}
		}
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		return enc.Encode(out)
	}
	return printPeers(e.stdout, peers, now)
}

// printPeers writes peers as a table.
func printPeers(w io.Writer, peers []membership.Peer, now time.Time) error {
	if len(peers) == 0 {
		_, err := fmt.Fprintln(w, "no nodes")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tNAME\tALIVE\tLAST HEARD\tCODECS\tFUNCTIONS [LOCS]")
	for _, p := range peers {
		alive := "yes"
		if !p.Alive {
			alive = "no"
		}
		codecs := make([]string, len(p.Hello.Codecs))
		for i, c := range p.Hello.Codecs {
			codecs[i] = strings.TrimPrefix(c, "application/")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.1fs ago\t%s\t%s\n", p.Hello.Node, orDash(p.Hello.Meta["name"]), alive,
			now.Sub(p.LastHeard).Seconds(), strings.Join(codecs, ","), funsByLocs(p.Hello.Funs))
	}
	return tw.Flush()
}

// funsByLocs lists functions grouped by their locs: "echo, whoami [cpu];
// train [cpu gpu]".
func funsByLocs(funs map[string][]string) string {
	groups := map[string][]string{}
	for _, f := range slices.Sorted(maps.Keys(funs)) {
		key := strings.Join(funs[f], " ")
		groups[key] = append(groups[key], f)
	}
	var parts []string
	for _, locs := range slices.Sorted(maps.Keys(groups)) {
		s := strings.Join(groups[locs], ", ")
		if locs != "" {
			s += " [" + locs + "]"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, "; ")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
