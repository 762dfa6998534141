// Package mesh is the NATS-facing side of talking to other nodes: it follows
// the gossip subjects into a membership.Table, sends exec requests to the
// node a planner picked, and decodes and answers messages in the codec the
// sender asked for. Both nodes and long-lived clients use it.
package mesh

import (
	"fmt"

	"github.com/nats-io/nats.go"

	"github.com/mpreg/mpreg/bus"
	"github.com/mpreg/mpreg/codec"
	"github.com/mpreg/mpreg/schema"
)

// Decode negotiates the codecs of a request message and decodes its body.
// reply is the codec to answer in; it is set even when err is not nil.
func Decode(m *nats.Msg) (tree any, reply codec.Codec, err *schema.Error) {
	req, reply, err := codec.Negotiate(bus.Header(m, codec.HeaderContentType), bus.Header(m, codec.HeaderAccept))
	if err != nil {
		return nil, reply, err
	}
	tree, derr := req.Decode(m.Data)
	if derr != nil {
		return nil, reply, &schema.Error{Code: schema.CodeInvalidRequest, Message: "body does not decode: " + derr.Error()}
	}
	return tree, reply, nil
}

// DecodeReply decodes a reply body in the codec its Content-Type names.
func DecodeReply(m *nats.Msg) (any, error) {
	c, ok := codec.ByType(bus.Header(m, codec.HeaderContentType))
	if !ok {
		return nil, schema.Errorf(schema.CodeUnsupportedCodec, "reply in unknown codec %q", bus.Header(m, codec.HeaderContentType))
	}
	tree, err := c.Decode(m.Data)
	if err != nil {
		return nil, schema.Errorf(schema.CodeInternal, "reply does not decode: %v", err)
	}
	return tree, nil
}

// Respond encodes v in c and answers m, setting Content-Type. When the
// encoded reply does not fit the connection's maximum payload, tooBig is
// called to build a smaller reply (for example an error object); a nil tooBig
// sends nothing and returns the error.
func Respond(nc *nats.Conn, m *nats.Msg, c codec.Codec, v any, tooBig func(size int) any) error {
	if m.Reply == "" {
		return nil
	}
	data, err := c.Encode(v)
	if err != nil {
		return fmt.Errorf("mesh: encode reply: %w", err)
	}
	out := bus.NewMsg(m.Reply, data, c.ContentType(), "")
	if !bus.Fits(nc, out) {
		if tooBig == nil {
			return fmt.Errorf("mesh: reply of %d bytes exceeds the max payload %d", len(data), nc.MaxPayload())
		}
		if out.Data, err = c.Encode(tooBig(len(data))); err != nil {
			return fmt.Errorf("mesh: encode reply: %w", err)
		}
	}
	if err := nc.PublishMsg(out); err != nil {
		return fmt.Errorf("mesh: respond: %w", err)
	}
	return nil
}

// TooLarge returns the PAYLOAD_TOO_LARGE error for a body of size bytes.
func TooLarge(what string, size int, max int64) *schema.Error {
	return &schema.Error{
		Code:    schema.CodePayloadTooLarge,
		Message: fmt.Sprintf("%s of %d bytes exceeds the NATS max payload of %d bytes", what, size, max),
		Details: map[string]any{"size": int64(size), "max": max},
	}
}
