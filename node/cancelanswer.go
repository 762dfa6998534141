package node

import (
	"github.com/nats-io/nats.go"

	"github.com/mpreg/mpreg/bus"
	"github.com/mpreg/mpreg/codec"
	"github.com/mpreg/mpreg/mesh"
	"github.com/mpreg/mpreg/schema"
)

// answerCancel answers a cancel of request id that this node stopped, when
// it came with a reply subject (docs/PROTOCOL.md §9): the sender learns
// that a node knew the id. A node that did not know it stays silent.
func (fr *front) answerCancel(m *nats.Msg, id string) {
	if m.Reply == "" {
		return
	}
	_, reply, _ := codec.Negotiate(bus.Header(m, codec.HeaderContentType), bus.Header(m, codec.HeaderAccept))
	if err := mesh.Respond(fr.nc, m, reply, &schema.CancelAnswer{ID: id, Node: fr.cfg.NodeID}, nil); err != nil {
		fr.replyFailed("cancel", id, err)
	}
}
