// Package bus connects MPREG to NATS: client connections with sane
// reconnect settings, an embedded nats-server for single-host and test
// setups, and every subject name of docs/PROTOCOL.md §2 in one place.
package bus

import (
	"errors"
	"fmt"
	"strings"
)

// DefaultPrefix is the subject prefix P of docs/PROTOCOL.md §1.
const DefaultPrefix = "mpreg"

// DefaultCluster is the cluster id of the nodes and clients that name
// none.
const DefaultCluster = "default"

// QueueGroup is the queue group of the rpc subject.
const QueueGroup = "mpreg"

// Subjects names the subjects of one cluster under one prefix.
type Subjects struct {
	prefix string
	base   string // "<prefix>.<cluster>"
	rpc    string // made once: every request compares or sends on it
	extRPC string
}

// NewSubjects returns the subjects of cluster under prefix ("" means
// DefaultPrefix).
func NewSubjects(prefix, cluster string) Subjects {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	base := prefix + "." + cluster
	return Subjects{prefix: prefix, base: base, rpc: base + ".rpc", extRPC: base + ".ext.rpc"}
}

// Bounds on subjects that come from outside (NATS' own limit is the
// server's max_control_line, 4 KiB by default, for the whole protocol line:
// a node that publishes on a longer subject is disconnected for good).
const (
	// MaxReplySubject bounds a subject a request asks a node to publish on
	// (beyond the NATS reply subject), such as the planner ack's.
	MaxReplySubject = 256
	// MaxInboxSubject bounds a NATS reply subject a node answers on.
	MaxInboxSubject = 1024
	// MaxPrefix bounds the subject prefix P.
	MaxPrefix = 128
)

// Reply checks a subject a caller asks to be sent something on (beyond
// the NATS reply subject): at most MaxReplySubject bytes of plain tokens,
// and none of MPREG's own subjects, so that no request can make a node
// publish gossip or steps, or a line the server refuses.
func (s Subjects) Reply(subject string) error {
	if len(subject) > MaxReplySubject {
		return fmt.Errorf("bus: subject of %d bytes: longer than %d", len(subject), MaxReplySubject)
	}
	if subject == "" || checkTokens(subject) != nil {
		return fmt.Errorf("bus: subject %q: tokens must be non-empty, without spaces, '*' or '>'", subject)
	}
	if subject == s.prefix || strings.HasPrefix(subject, s.prefix+".") {
		return fmt.Errorf("bus: subject %q is under %s, MPREG's own subjects", subject, s.prefix)
	}
	return nil
}

// CheckInbox checks a NATS reply subject before a node answers on it: the
// sender's server accepted it, but a server of the same NATS cluster with a
// smaller max_control_line might not accept our answer.
func CheckInbox(subject string) error {
	if len(subject) > MaxInboxSubject {
		return fmt.Errorf("bus: reply subject of %d bytes: longer than %d", len(subject), MaxInboxSubject)
	}
	return nil
}

// checkInboxPrefix checks a ConnConfig.InboxPrefix: at most MaxPrefix
// bytes of plain subject tokens.
func checkInboxPrefix(prefix string) error {
	if len(prefix) > MaxPrefix || checkTokens(prefix) != nil {
		return fmt.Errorf("%w: inbox prefix %q: at most %d bytes of tokens that are non-empty, without spaces, '*' or '>'", ErrInvalidConfig, prefix, MaxPrefix)
	}
	return nil
}

// CheckPrefix checks that prefix is at most MaxPrefix bytes of plain NATS
// subject tokens.
func CheckPrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	if len(prefix) > MaxPrefix || checkTokens(prefix) != nil {
		return fmt.Errorf("bus: subject prefix %q: at most %d bytes of tokens that are non-empty, without spaces, '*' or '>'", prefix, MaxPrefix)
	}
	return nil
}

// errToken is checkTokens' error.
var errToken = errors.New("bus: bad subject token")

// checkTokens checks that s is dot-separated tokens, each non-empty and
// without white space, '*' or '>'.
func checkTokens(s string) error {
	for _, tok := range strings.Split(s, ".") {
		if tok == "" || strings.ContainsAny(tok, " \t\r\n*>") {
			return errToken
		}
	}
	return nil
}

// RPC is P.<cluster>.rpc: whole requests, served by the queue group.
func (s Subjects) RPC() string { return s.rpc }

// ExtRPC is P.<cluster>.ext.rpc: whole requests, like RPC, from callers
// in other NATS accounts. The nodes' account exports it (and ExtCancel),
// never RPC: a message on it must carry the stamp NATS adds when a request
// crosses an import (docs/SECURITY.md).
func (s Subjects) ExtRPC() string { return s.extRPC }

// ExtCancel is P.<cluster>.ext.cancel: CancelRequest for callers in other
// NATS accounts, stamped as ExtRPC is.
func (s Subjects) ExtCancel() string { return s.base + ".ext.cancel" }

// Status is P.<cluster>.status: where a durable request is (a
// schema.StatusRequest, answered with a schema.Status), served by the
// queue group.
func (s Subjects) Status() string { return s.base + ".status" }

// ExtStatus is P.<cluster>.ext.status: Status for callers in other NATS
// accounts, stamped as ExtRPC is.
func (s Subjects) ExtStatus() string { return s.base + ".ext.status" }

// NodeRPC is P.<cluster>.node.<node>.rpc: whole requests, like RPC, for
// that node to plan; a caller that knows where a request is best planned
// sends it there (docs/PROTOCOL.md §4.6).
func (s Subjects) NodeRPC(node string) string { return s.base + ".node." + node + ".rpc" }

// Exec is P.<cluster>.node.<node>.exec: one step for that node.
func (s Subjects) Exec(node string) string { return s.base + ".node." + node + ".exec" }

// Cancel is P.<cluster>.node.<node>.cancel: a planner that gave up on a
// step asks the node to cancel it (optional; docs/PROTOCOL.md §6.3).
func (s Subjects) Cancel(node string) string { return s.base + ".node." + node + ".cancel" }

// CancelRequest is P.<cluster>.cancel: anyone may ask that the rpc request
// with an id be stopped; the node that plans it does so.
func (s Subjects) CancelRequest() string { return s.base + ".cancel" }

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
