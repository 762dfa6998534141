// Package mesh is the NATS-facing side of talking to other nodes: it follows
// the gossip subjects into a membership.Table, sends exec requests to the
// node a planner picked, and decodes and answers messages in the codec the
// sender asked for. Both nodes and long-lived clients use it.
package mesh

import (
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"

	"github.com/mpreg/mpreg/bus"
	"github.com/mpreg/mpreg/codec"
	"github.com/mpreg/mpreg/schema"
)

// ErrInvalidConfig wraps every configuration error of package mesh.
var ErrInvalidConfig = errors.New("mesh: invalid config")

// Decode negotiates the codecs of a request message and decodes its body.
// reply is the codec to answer in; it is set even when err is not nil.
func Decode(m *nats.Msg) (tree any, reply codec.Codec, err error) {
	tree, _, reply, err = DecodeSized(m, codec.MaxDecoded, false)
	return tree, reply, err
}

// Codecs negotiates the codecs of a request message (codec.Negotiate).
// With bare, as on a node's exec and node rpc subjects, a message that
// names no codec (neither Content-Type nor Accept) is read in the codec
// its first byte tells (codec.Sniff) and answered in it
// (docs/PROTOCOL.md §3); without, it is JSON.
func Codecs(m *nats.Msg, bare bool) (req, reply codec.Codec, err error) {
	ct, accept := bus.Header(m, codec.HeaderContentType), bus.Header(m, codec.HeaderAccept)
	if bare && ct == "" && accept == "" {
		c := codec.Sniff(m.Data)
		return c, c, nil
	}
	return codec.Negotiate(ct, accept)
}

// DecodeSized is Decode bounded by max bytes of decoded memory (see
// codec.DecodeSized), returning the decoded tree's estimated size, with
// bare as Codecs takes it. A body past the bound is PAYLOAD_TOO_LARGE with
// details.limit "max_decoded_bytes".
func DecodeSized(m *nats.Msg, limit int64, bare bool) (tree any, size int64, reply codec.Codec, err error) {
	req, reply, err := Codecs(m, bare)
	if err != nil {
		return nil, 0, reply, err
	}
	tree, size, derr := codec.DecodeSized(req, m.Data, limit)
	if derr != nil {
		return nil, size, reply, decodeError(m, limit, derr)
	}
	return tree, size, reply, nil
}

// ReadSized is DecodeSized reading a wire struct straight from the bytes
// with read (schema.ReadRequest, …; see codec.ReadSized): a body that does
// not decode fails as with DecodeSized, and read's error comes back as it
// gave it, with what it read.
func ReadSized[T any](m *nats.Msg, limit int64, bare bool, read func(schema.Reader) (T, error)) (v T, size int64, reply codec.Codec, err error) {
	req, reply, err := Codecs(m, bare)
	if err != nil {
		return v, 0, reply, err
	}
	v, size, err = codec.ReadSized(req, m.Data, limit, read)
	if errors.Is(err, codec.ErrDecode) {
		return v, size, reply, decodeError(m, limit, err)
	}
	return v, size, reply, err
}

// decodeError is the error of a body that does not decode within limit
// bytes of decoded memory.
func decodeError(m *nats.Msg, limit int64, derr error) *schema.Error {
	if errors.Is(derr, codec.ErrTooBig) {
		e := schema.Wrap(schema.CodePayloadTooLarge, derr, "")
		e.Message = fmt.Sprintf("the body of %d bytes decodes to more than %d bytes of memory", len(m.Data), limit)
		e.Details = map[string]any{"limit": "max_decoded_bytes", "max": limit}
		return e
	}
	return schema.Wrap(schema.CodeInvalidRequest, derr, "body does not decode")
}

// DecodeReply decodes a reply (or a message published to us) in the codec
// its Content-Type names; without one, in the codec its first byte tells
// (codec.Sniff): JSON, or MessagePack from a node that answers a request
// sent without header so (docs/PROTOCOL.md §6.2). A codec we do not speak
// is the sender's fault: INTERNAL, not UNSUPPORTED_CODEC, which would
// blame our caller's codec.
func DecodeReply(m *nats.Msg) (any, error) {
	c, err := replyCodec(m)
	if err != nil {
		return nil, err
	}
	tree, err := c.Decode(m.Data)
	if err != nil {
		return nil, schema.Wrap(schema.CodeInternal, err, "reply does not decode")
	}
	return tree, nil
}

// ReadReply is DecodeReply reading a wire struct straight from the bytes
// with read (schema.ReadExecReply, …). A reply that does not decode is
// INTERNAL, as with DecodeReply; read's error, an INVALID_REQUEST, comes
// back as it gave it, for the caller to name the sender (BadReply).
func ReadReply[T any](m *nats.Msg, read func(schema.Reader) (T, error)) (v T, err error) {
	c, err := replyCodec(m)
	if err != nil {
		return v, err
	}
	v, _, err = codec.ReadSized(c, m.Data, codec.MaxDecoded, read)
	if errors.Is(err, codec.ErrDecode) {
		return v, schema.Wrap(schema.CodeInternal, err, "reply does not decode")
	}
	return v, err
}

// BadReply is an error of ReadReply as its caller reports it: a reply
// read refused (INVALID_REQUEST) is its sender's fault, INTERNAL, with the
// message format and args give; one that does not decode is INTERNAL
// already.
func BadReply(err error, format string, args ...any) error {
	if schema.AsError(err).Code != schema.CodeInvalidRequest {
		return err
	}
	return schema.Wrap(schema.CodeInternal, err, format, args...)
}

// replyCodec is the codec of a reply: the one its Content-Type names, or
// the one its first byte tells.
func replyCodec(m *nats.Msg) (codec.Codec, error) {
	ct := bus.Header(m, codec.HeaderContentType)
	if ct == "" {
		return codec.Sniff(m.Data), nil
	}
	c, ok := codec.ByType(ct)
	if !ok {
		return nil, schema.Errorf(schema.CodeInternal, "a peer answered in Content-Type %s, a codec this node does not speak", schema.Clip(ct))
	}
	return c, nil
}

// Respond encodes v in c and answers m, setting Content-Type. When v does
// not encode (a NaN in JSON, say) or its encoding does not fit the
// connection's maximum payload, fallback is called with the problem (code
// FUNCTION_ERROR or PAYLOAD_TOO_LARGE) to build a smaller reply, usually an
// error object; its message is clipped and its details dropped if even that
// does not fit. A nil fallback sends nothing and returns the error.
func Respond(nc *nats.Conn, m *nats.Msg, c codec.Codec, v any, fallback func(problem *schema.Error) any) error {
	return RespondEvent(nc, m, c, "", v, fallback)
}

// RespondEvent is Respond for one message of a streamed response: the
// message carries the header schema.HeaderEvent set to event (none when
// event is "").
func RespondEvent(nc *nats.Conn, m *nats.Msg, c codec.Codec, event string, v any, fallback func(problem *schema.Error) any) error {
	if m.Reply == "" {
		return nil
	}
	data, problem := FitReply(nc, c, event, v)
	if problem != nil {
		if fallback == nil {
			return fmt.Errorf("mesh: reply: %w", problem)
		}
		fb := fallback(problem)
		var err error
		data, err = c.Encode(fb)
		if err != nil || int64(len(data)+256) > nc.MaxPayload() {
			clipErrors(fb)
			if data, err = c.Encode(fb); err != nil {
				return fmt.Errorf("mesh: encode fallback reply: %w", err)
			}
		}
	}
	return PublishReply(nc, m, c, event, data)
}

// FitReply encodes v in c for a reply (with the header
// schema.HeaderEvent set to event unless it is "") and checks that it fits
// the connection's maximum payload. problem says why it cannot be sent:
// FUNCTION_ERROR when v does not encode, PAYLOAD_TOO_LARGE when it does
// not fit.
func FitReply(nc *nats.Conn, c codec.Codec, event string, v any) (data []byte, problem *schema.Error) {
	if size, ok := codec.SizeWithin(v, int(nc.MaxPayload())); !ok {
		return nil, TooLarge("reply", size, nc.MaxPayload())
	}
	data, err := c.Encode(v)
	if err != nil {
		return nil, schema.Wrap(schema.CodeFunctionError, err, "a result does not encode in %s", c.ContentType())
	}
	fit := bus.FitsWith(nc, len(data), codec.HeaderContentType, c.ContentType())
	if event != "" {
		fit = bus.FitsWith(nc, len(data), codec.HeaderContentType, c.ContentType(), schema.HeaderEvent, event)
	}
	if !fit {
		return nil, TooLarge("reply", len(data), nc.MaxPayload())
	}
	return data, nil
}

// PublishReply sends data, encoded in c, as a reply to m, with the header
// schema.HeaderEvent set to event unless it is "".
func PublishReply(nc *nats.Conn, m *nats.Msg, c codec.Codec, event string, data []byte) error {
	if m.Reply == "" {
		return nil
	}
	if err := bus.CheckInbox(m.Reply); err != nil {
		return fmt.Errorf("mesh: reply not sent: %w", err)
	}
	var err error
	if bareReply(m, c, event) {
		err = nc.Publish(m.Reply, data)
	} else {
		out := replyMsg(m, c, event, data)
		err = nc.PublishMsg(&out)
	}
	if err != nil {
		return fmt.Errorf("mesh: respond: %w", err)
	}
	return nil
}

// ReplyMsg is the message PublishReply sends for data, for a caller that
// publishes it later: nil, with a nil error, when m wants no reply, and
// nil with the error when its reply subject is not one to answer on.
func ReplyMsg(m *nats.Msg, c codec.Codec, event string, data []byte) (*nats.Msg, error) {
	if m.Reply == "" {
		return nil, nil
	}
	if err := bus.CheckInbox(m.Reply); err != nil {
		return nil, fmt.Errorf("mesh: reply not sent: %w", err)
	}
	if bareReply(m, c, event) {
		return &nats.Msg{Subject: m.Reply, Data: data}, nil
	}
	out := replyMsg(m, c, event, data)
	return &out, nil
}

// bareReply reports whether the reply to m goes without header: a caller
// that named no codec gets none, and neither side encodes or parses one
// (docs/PROTOCOL.md §3): the reply is JSON, or in the codec the request's
// first byte told.
func bareReply(m *nats.Msg, c codec.Codec, event string) bool {
	return event == "" && bareRequest(m) && (c == codec.JSON || c == codec.Sniff(m.Data))
}

// replyMsg is the reply to m carrying data (FitReply sizes it as such): a
// value, which PublishReply keeps on its stack.
func replyMsg(m *nats.Msg, c codec.Codec, event string, data []byte) nats.Msg {
	out := *bus.NewMsg(m.Reply, data, c.ContentType(), "")
	if event != "" {
		out.Header = nats.Header{codec.HeaderContentType: []string{c.ContentType()}, schema.HeaderEvent: []string{event}}
	}
	return out
}

// bareRequest reports whether m named no codec: neither Content-Type nor
// Accept.
func bareRequest(m *nats.Msg) bool {
	return bus.Header(m, codec.HeaderContentType) == "" && bus.Header(m, codec.HeaderAccept) == ""
}

// maxMessage bounds the message of an error that had to be clipped.
const maxMessage = 1024

// clipErrors shortens the error objects in a fallback reply: message cut to
// maxMessage bytes, details dropped.
func clipErrors(v any) {
	clip := func(e *schema.Error) {
		if e == nil {
			return
		}
		if len(e.Message) > maxMessage {
			e.Message = e.Message[:maxMessage] + "…"
		}
		if len(e.Step) > maxMessage {
			e.Step = e.Step[:maxMessage] + "…"
		}
		e.Details = nil
	}
	switch t := v.(type) {
	case *schema.Response:
		clip(t.Error)
		t.Results = map[string]any{}
	case schema.ExecError:
		clip(t.Error)
	case *schema.Error:
		clip(t)
	}
}

// TooLarge returns the PAYLOAD_TOO_LARGE error for a body of size bytes.
func TooLarge(what string, size int, limit int64) *schema.Error {
	return &schema.Error{
		Code:    schema.CodePayloadTooLarge,
		Message: fmt.Sprintf("%s of %d bytes exceeds the NATS max payload of %d bytes", what, size, limit),
		Details: map[string]any{"limit": "max_payload", "size": int64(size), "max": limit},
	}
}
