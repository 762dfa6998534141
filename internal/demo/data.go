package demo

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"

	"github.com/mpreg/mpreg/node"
	"github.com/mpreg/mpreg/schema"
)

// The functions for data: blob makes a value of any size, sha256 and length
// read one. They stream (node.Blob): a value passed by reference is
// generated into, or read from, the cluster's object bucket a piece at a
// time, never held whole by them.

// patternAt is byte i of blob(size, seed): (i*31 + seed) mod 251.
func patternAt(i, seed int64) byte {
	m := (i*31 + seed) % 251
	if m < 0 {
		m += 251
	}
	return byte(m)
}

// pattern reads the bytes of blob(size, seed) as they are asked for. They
// repeat every 251 bytes (31·251 ≡ 0 mod 251), so it copies them from one
// run of whole periods.
type pattern struct {
	i, size, seed int64
	period        []byte // patternRun bytes from i = 0
}

// patternRun is how many bytes of blob pattern keeps: 64 periods.
const patternRun = 251 * 64

func (p *pattern) Read(b []byte) (int, error) {
	if p.i >= p.size {
		return 0, io.EOF
	}
	if p.period == nil {
		p.period = make([]byte, patternRun)
		for k := range p.period {
			p.period[k] = patternAt(int64(k), p.seed)
		}
	}
	n := int(min(int64(len(b)), p.size-p.i))
	for done := 0; done < n; {
		done += copy(b[done:n], p.period[(p.i+int64(done))%251:])
	}
	p.i += int64(n)
	return n, nil
}

// blobFunc returns blob(size, seed=0) for a node whose values are at most
// maxBytes: size bytes where byte i is (i*31 + seed) mod 251, streamed.
func blobFunc(maxBytes int64) func(size int64, seed any) (*node.Blob, error) {
	return func(size int64, seed any) (*node.Blob, error) {
		if size < 0 || size > maxBytes {
			return nil, &schema.Error{Code: schema.CodeInvalidArgument,
				Message: fmt.Sprintf("blob: size must be 0 to %d (the node's max_object_bytes), got %d", maxBytes, size),
				Details: map[string]any{"param": "size", "max": maxBytes}}
		}
		var s int64
		switch v := seed.(type) {
		case nil:
		case int64:
			s = v % 251
		default:
			return nil, &schema.Error{Code: schema.CodeInvalidArgument,
				Message: fmt.Sprintf("blob: seed: want an integer, got %T", seed), Details: map[string]any{"param": "seed"}}
		}
		return node.NewBlob(&pattern{size: size, seed: s}, size), nil
	}
}

// sha256Hex is sha256(data): the lower-case hex SHA-256 of binary data or
// of a string's UTF-8 bytes.
func sha256Hex(data *node.Blob) (string, error) {
	if data == nil {
		return "", nullData("sha256")
	}
	h := sha256.New()
	if _, err := io.Copy(h, data); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// length is length(data): the number of bytes of binary data or of a
// string's UTF-8 bytes. A value passed by reference is not fetched: its
// reference says its size.
func length(data *node.Blob) (int64, error) {
	if data == nil {
		return 0, nullData("length")
	}
	if n := data.Size(); n >= 0 {
		return n, nil
	}
	return io.Copy(io.Discard, data)
}

func nullData(fun string) *schema.Error {
	return &schema.Error{Code: schema.CodeInvalidArgument,
		Message: fun + ": data: want binary or a string, got null", Details: map[string]any{"param": "data"}}
}
