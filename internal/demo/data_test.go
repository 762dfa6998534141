package demo

import (
	"errors"
	"io"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestPatternReads: pattern gives (i*31 + seed) mod 251 whatever the size
// of the reads, and io.EOF at the end.
func TestPatternReads(t *testing.T) {
	for _, piece := range []int{1, 7, 250, 251, 252, 5000, patternRun + 3, 100_000} {
		p := &pattern{size: 70_001, seed: -3}
		var got []byte
		buf := make([]byte, piece)
		for {
			n, err := p.Read(buf)
			got = append(got, buf[:n]...)
			if errors.Is(err, io.EOF) {
				break
			}
			require.NoError(t, err)
			require.Positive(t, n)
		}
		require.Len(t, got, 70_001, "reads of %d", piece)
		for i, b := range got {
			if b != patternAt(int64(i), -3) {
				t.Fatalf("reads of %d: byte %d is %d, want %d", piece, i, b, patternAt(int64(i), -3))
			}
		}
	}
	require.Equal(t, byte(248), patternAt(0, -3))
	require.Equal(t, byte(28), patternAt(1, -3))
}
