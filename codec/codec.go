// Package codec encodes and decodes MPREG message bodies as JSON or
// MessagePack, chosen per message from the NATS Content-Type and Accept
// headers (docs/PROTOCOL.md §3), or, for a body without them on a node's
// own subjects, from its first byte (Sniff), into one value model whichever the codec:
// nil, bool, int64, uint64 (only above math.MaxInt64), float64, string,
// []byte (base64 text in JSON), []any and map[string]any. A Binder turns a
// tree into typed Go values as encoding/json would; Normalize, Go values
// into the model.
package codec

import (
	"errors"
	"fmt"
	"strings"

	"github.com/mpreg/mpreg/schema"
)

// Media types of the codecs this package speaks.
const (
	JSONType    = "application/json"
	MsgPackType = "application/msgpack"
)

// NATS header names used for negotiation. NATS headers are case-sensitive.
const (
	HeaderContentType = "Content-Type"
	HeaderAccept      = "Accept"
)

// MaxDepth bounds the nesting of decoded values; deeper input is an error.
const MaxDepth = 256

var errTooDeep = fmt.Errorf("nesting deeper than %d", MaxDepth)

// ErrDecode wraps every decoding failure.
var ErrDecode = errors.New("codec: decode")

// Codec encodes values to bytes and decodes bytes to a value tree.
type Codec interface {
	// ContentType is the media type written in the Content-Type header.
	ContentType() string
	// Encode encodes v: the value model, or what Normalize takes.
	Encode(v any) ([]byte, error)
	// Decode decodes one complete value into the value model.
	Decode(data []byte) (any, error)
}

// JSON and MsgPack are the two codecs.
var (
	JSON    Codec = jsonCodec{}
	MsgPack Codec = msgpackCodec{}
)

// Supported lists the codecs in this project's order of preference.
var Supported = []Codec{MsgPack, JSON}

// SupportedTypes lists the media types of Supported, for hello.codecs.
func SupportedTypes() []string { return []string{MsgPackType, JSONType} }

func mediaType(h string) string {
	if i := strings.IndexByte(h, ';'); i >= 0 {
		h = h[:i]
	}
	return strings.ToLower(strings.TrimSpace(h))
}

// ByType returns the codec for a media type. Parameters such as
// "; charset=utf-8" are ignored; an empty type means JSON.
func ByType(h string) (Codec, bool) {
	switch mediaType(h) {
	case "", JSONType, "text/json":
		return JSON, true
	case MsgPackType, "application/x-msgpack", "application/vnd.msgpack":
		return MsgPack, true
	}
	return nil, false
}

// Negotiate picks the codec of a request body from its Content-Type and the
// codec of the reply from Accept. An empty, "*/*" or "application/*" Accept
// means the request's codec. An unknown Content-Type or Accept is an
// UNSUPPORTED_CODEC error; reply is then the codec to send that error in (the
// request's when known, else JSON).
func Negotiate(contentType, accept string) (req, reply Codec, err error) {
	req, ok := ByType(contentType)
	if !ok {
		return nil, JSON, unsupported("Content-Type", contentType)
	}
	switch a := mediaType(accept); a {
	case "", "*/*", "application/*":
		return req, req, nil
	default:
		r, ok := ByType(a)
		if !ok {
			return req, req, unsupported("Accept", accept)
		}
		return req, r, nil
	}
}

func unsupported(header, value string) *schema.Error {
	return &schema.Error{
		Code:    schema.CodeUnsupportedCodec,
		Message: fmt.Sprintf("%s %s names a codec this node does not speak", header, schema.Clip(value)),
		Details: map[string]any{"supported": []any{MsgPackType, JSONType}}, // Supported
	}
}

// Preferred returns the first codec of this project's preference that a peer
// lists, or JSON when it lists none we speak.
func Preferred(peer []string) Codec {
	for _, c := range Supported {
		for _, p := range peer {
			if mediaType(p) == c.ContentType() {
				return c
			}
		}
	}
	return JSON
}

// Sniff is the codec of a body that names none, on the subjects where a
// node reads MessagePack without a header (docs/PROTOCOL.md §3): MessagePack
// when its first byte opens a MessagePack map (fixmap 0x80–0x8f, map 16
// 0xde, map 32 0xdf), JSON otherwise. A JSON text begins with white space
// or a value, an ASCII byte below 0x80 either way, so every JSON body is
// still read as JSON. Only the first byte is looked at.
func Sniff(data []byte) Codec {
	if len(data) > 0 && (data[0]&0xf0 == 0x80 || data[0] == 0xde || data[0] == 0xdf) {
		return MsgPack
	}
	return JSON
}

// DecodeSized is c.Decode bounded by limit bytes of estimated memory (at
// most MaxDecoded), and returns the estimate: a node counts what the
// requests it plans hold.
func DecodeSized(c Codec, data []byte, limit int64) (v any, size int64, err error) {
	if d, ok := c.(interface {
		decode([]byte, int64) (any, int64, error)
	}); ok {
		return d.decode(data, min(limit, MaxDecoded))
	}
	v, err = c.Decode(data)
	return v, int64(len(data)), err
}

func decodeErr(c Codec, err error) error {
	return fmt.Errorf("%w: %s: %w", ErrDecode, c.ContentType(), err)
}
