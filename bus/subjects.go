// Package bus connects MPREG to NATS: client connections with sane
// reconnect settings, an embedded nats-server for single-host and test
// setups, and every subject name of PROTOCOL.md §2 in one place.
package bus

import (
	"fmt"
	"strings"
)

// DefaultPrefix is the subject prefix P of PROTOCOL.md §1.
const DefaultPrefix = "mpreg"

// QueueGroup is the queue group of the rpc subject.
const QueueGroup = "mpreg"

// Subjects names the subjects of one cluster under one prefix.
type Subjects struct {
	prefix string
	base   string // "<prefix>.<cluster>"
}

// NewSubjects returns the subjects of cluster under prefix ("" means
// DefaultPrefix).
func NewSubjects(prefix, cluster string) Subjects {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	return Subjects{prefix: prefix, base: prefix + "." + cluster}
}

// Reply checks a subject a caller asks to be sent something on (beyond
// the NATS reply subject): plain tokens, and none of MPREG's own subjects,
// so that no request can make a node publish gossip or steps.
func (s Subjects) Reply(subject string) error {
	if err := CheckPrefix(subject); err != nil || subject == "" {
		return fmt.Errorf("bus: subject %q: tokens must be non-empty, without spaces, '*' or '>'", subject)
	}
	if subject == s.prefix || strings.HasPrefix(subject, s.prefix+".") {
		return fmt.Errorf("bus: subject %q is under %s, MPREG's own subjects", subject, s.prefix)
	}
	return nil
}

// CheckPrefix checks that prefix is one or more plain NATS subject tokens.
func CheckPrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	for _, tok := range strings.Split(prefix, ".") {
		if tok == "" || strings.ContainsAny(tok, " \t\r\n*>") {
			return fmt.Errorf("bus: subject prefix %q: tokens must be non-empty, without spaces, '*' or '>'", prefix)
		}
	}
	return nil
}

// RPC is P.<cluster>.rpc: whole requests, served by the queue group.
func (s Subjects) RPC() string { return s.base + ".rpc" }

// Exec is P.<cluster>.node.<node>.exec: one step for that node.
func (s Subjects) Exec(node string) string { return s.base + ".node." + node + ".exec" }

// Cancel is P.<cluster>.node.<node>.cancel: a planner that gave up on a
// step asks the node to cancel it (an extension; see docs/PROTOCOL-NOTES.md).
func (s Subjects) Cancel(node string) string { return s.base + ".node." + node + ".cancel" }

// Info is P.<cluster>.node.<node>.info: that node's hello on request.
func (s Subjects) Info(node string) string { return s.base + ".node." + node + ".info" }

// Hello is P.<cluster>.gossip.hello.
func (s Subjects) Hello() string { return s.base + ".gossip.hello" }

// Heartbeat is P.<cluster>.gossip.heartbeat.
func (s Subjects) Heartbeat() string { return s.base + ".gossip.heartbeat" }

// Goodbye is P.<cluster>.gossip.goodbye.
func (s Subjects) Goodbye() string { return s.base + ".gossip.goodbye" }

// Sync is P.<cluster>.gossip.sync: a request every node answers with hello.
func (s Subjects) Sync() string { return s.base + ".gossip.sync" }
