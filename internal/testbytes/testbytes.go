// Package testbytes makes the test data of values passed by reference:
// bytes of a known pattern, and their digest.
package testbytes

import (
	"crypto/sha256"
	"encoding/hex"
)

// Pattern returns size bytes where byte i is (i*31 + seed) mod 251, as
// the demo's blob(size, seed) does.
func Pattern(size, seed int) []byte {
	b := make([]byte, size)
	for i := range b {
		b[i] = byte((i*31 + seed) % 251)
	}
	return b
}

// SHA256 is the lower-case hex SHA-256 of b.
func SHA256(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
