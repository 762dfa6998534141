package node

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/mpreg/mpreg/bus"
	"github.com/mpreg/mpreg/schema"
)

// ServiceName is the name under which every node answers the NATS service
// discovery protocol (ADR-32): `nats micro ls` lists each node as a
// service "mpreg" whose id is the node id.
const ServiceName = "mpreg"

// The node answers $SRV.PING, $SRV.INFO and $SRV.STATS itself, in the types
// of nats.go's micro package, rather than through micro.AddService: micro's
// endpoints own their subscriptions and time each handler on the
// subscription's goroutine, but a node's rpc and exec handlers hand the
// work to other goroutines (a request's time is not the handler's) and its
// drain stops rpc and exec one after the other (micro stops them
// together). The counts here are the node's own.

// endpointStats counts one endpoint's requests for $SRV.STATS.
type endpointStats struct {
	n, errs atomic.Int64
	ns      atomic.Int64 // processing time, summed
	last    atomic.Pointer[string]
}

// done counts a request that took d and ended with e (nil on success).
func (s *endpointStats) done(d time.Duration, e *schema.Error) {
	s.n.Add(1)
	s.ns.Add(int64(d))
	if e != nil {
		s.errs.Add(1)
		msg := e.Error()
		s.last.Store(&msg)
	}
}

func (s *endpointStats) stats(name, subject, queue string) *micro.EndpointStats {
	n, ns := s.n.Load(), s.ns.Load()
	st := &micro.EndpointStats{Name: name, Subject: subject, QueueGroup: queue,
		NumRequests: int(n), NumErrors: int(s.errs.Load()), ProcessingTime: time.Duration(ns)}
	if n > 0 {
		st.AverageProcessingTime = time.Duration(ns / n)
	}
	if l := s.last.Load(); l != nil {
		st.LastError = *l
	}
	return st
}

// identity is the node as a service instance.
func (n *Node) identity() micro.ServiceIdentity {
	funs := n.reg.funs(n.cfg.Locs)
	names := make([]string, 0, len(funs))
	for f := range funs {
		names = append(names, f)
	}
	slices.Sort(names)
	return micro.ServiceIdentity{Name: ServiceName, ID: n.cfg.NodeID, Version: Version, Metadata: map[string]string{
		"cluster": n.cfg.Cluster, "node": n.cfg.NodeID, "locs": strings.Join(n.cfg.Locs, ","),
		"functions": strings.Join(names, ","), "incarnation": fmt.Sprint(n.ann.Incarnation()),
	}}
}

// endpoint is one of the node's endpoints, with its stats.
type endpoint struct {
	info  micro.EndpointInfo
	stats *endpointStats
}

// endpoints are the node's rpc, exec and ext rpc endpoints.
func (n *Node) endpoints() []endpoint {
	return []endpoint{
		{micro.EndpointInfo{Name: "rpc", Subject: n.subj.RPC(), QueueGroup: bus.QueueGroup,
			Metadata: map[string]string{"protocol": "docs/PROTOCOL.md §4"}}, &n.front.stats.rpc},
		{micro.EndpointInfo{Name: "node-rpc", Subject: n.subj.NodeRPC(n.cfg.NodeID),
			Metadata: map[string]string{"protocol": "docs/PROTOCOL.md §4.6"}}, &n.front.stats.nodeRPC},
		{micro.EndpointInfo{Name: "exec", Subject: n.subj.Exec(n.cfg.NodeID),
			Metadata: map[string]string{"protocol": "docs/PROTOCOL.md §6"}}, &n.executor.execStats},
		{micro.EndpointInfo{Name: "ext-rpc", Subject: n.subj.ExtRPC(), QueueGroup: bus.QueueGroup,
			Metadata: map[string]string{"protocol": "docs/PROTOCOL.md §4.5"}}, &n.front.stats.extRPC},
	}
}

// answerService subscribes the discovery subjects of ADR-32: every node,
// every "mpreg" service, and this node by id.
func (n *Node) answerService() error {
	for _, verb := range []micro.Verb{micro.PingVerb, micro.InfoVerb, micro.StatsVerb} {
		for _, target := range [][2]string{{"", ""}, {ServiceName, ""}, {ServiceName, n.cfg.NodeID}} {
			subject, err := micro.ControlSubject(verb, target[0], target[1])
			if err != nil {
				return err
			}
			s, err := n.nc.Subscribe(subject, n.onService(verb))
			if err != nil {
				return fmt.Errorf("node: subscribe %s: %w", subject, err)
			}
			n.subs = append(n.subs, s)
		}
	}
	return nil
}

// onService answers one discovery verb.
func (n *Node) onService(verb micro.Verb) nats.MsgHandler {
	return func(m *nats.Msg) {
		if m.Reply == "" || bus.CheckInbox(m.Reply) != nil {
			return
		}
		id := n.identity()
		var body any
		switch verb {
		case micro.PingVerb:
			body = micro.Ping{ServiceIdentity: id, Type: micro.PingResponseType}
		case micro.InfoVerb:
			info := micro.Info{ServiceIdentity: id, Type: micro.InfoResponseType,
				Description: fmt.Sprintf("MPREG node %s of cluster %s", n.cfg.NodeID, n.cfg.Cluster)}
			for _, e := range n.endpoints() {
				info.Endpoints = append(info.Endpoints, e.info)
			}
			body = info
		default:
			st := micro.Stats{ServiceIdentity: id, Type: micro.StatsResponseType, Started: n.started0}
			for _, e := range n.endpoints() {
				st.Endpoints = append(st.Endpoints, e.stats.stats(e.info.Name, e.info.Subject, e.info.QueueGroup))
			}
			body = st
		}
		data, err := json.Marshal(body)
		if err == nil {
			err = m.Respond(data)
		}
		if err != nil {
			n.log.Debug("service discovery not answered", "subject", m.Subject, "error", err)
		}
	}
}
