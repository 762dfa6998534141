package bench

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"

	"github.com/mpreg/mpreg/node"
)

// The functions a value passed by reference goes through: a producer that
// makes size bytes (byte i is i*31 mod 251) and a consumer that digests
// them, each as []byte, which the function holds whole, and as a
// *node.Blob, which it streams.
const (
	ObjMake   = "bench_make"   // (size) []byte
	ObjDigest = "bench_digest" // ([]byte) hex SHA-256
	ObjGen    = "bench_gen"    // (size) *node.Blob
	ObjSum    = "bench_sum"    // (*node.Blob) hex SHA-256
)

// registerObjFuncs registers ObjMake, ObjDigest, ObjGen and ObjSum on n.
func registerObjFuncs(n *node.Node) error {
	for _, f := range []struct {
		name string
		fn   any
	}{
		{ObjMake, func(size int) []byte {
			b := make([]byte, size)
			_, _ = io.ReadFull(&patternReader{size: size}, b)
			return b
		}},
		{ObjDigest, func(b []byte) string {
			s := sha256.Sum256(b)
			return hex.EncodeToString(s[:])
		}},
		{ObjGen, func(size int) *node.Blob { return node.NewBlob(&patternReader{size: size}, int64(size)) }},
		{ObjSum, func(b *node.Blob) (string, error) {
			h := sha256.New()
			if _, err := io.Copy(h, b); err != nil {
				return "", err
			}
			return hex.EncodeToString(h.Sum(nil)), nil
		}},
	} {
		if err := n.Register(f.name, f.fn, node.Idempotent()); err != nil {
			return fmt.Errorf("bench: register %s: %w", f.name, err)
		}
	}
	return nil
}

// patternReader reads size bytes, byte i being i*31 mod 251, without
// holding them.
type patternReader struct{ i, size int }

func (p *patternReader) Read(b []byte) (int, error) {
	if p.i >= p.size {
		return 0, io.EOF
	}
	n := min(len(b), p.size-p.i)
	for k := range n {
		b[k] = byte((p.i + k) * 31 % 251)
	}
	p.i += n
	return n, nil
}
