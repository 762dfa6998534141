//go:build !race

package node_test

import "testing"

const raceEnabled = false

// TestLoadObjectsChain moves a 50 MiB value through objectsChain's three
// steps on three servers (make load runs it without the race detector).
func TestLoadObjectsChain(t *testing.T) { objectsChain(t, 50<<20) }
