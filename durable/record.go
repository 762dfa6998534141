package durable

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
)

// Version is the format version of the values this code writes (the V of
// Record, Final and a step's value). A value of a greater version was
// written by a newer node and gives ErrNewer.
const Version = 1

// Errors of the store. Every error a Store method returns wraps one of
// them or a ctx error, so callers match with errors.Is.
var (
	// ErrNotFound: the key has no such entry (no record, no final).
	ErrNotFound = errors.New("durable: not found")
	// ErrLeased: another holder has the lease; errors.As with *LeasedError
	// reads who.
	ErrLeased = errors.New("durable: leased by another holder")
	// ErrFinished: the request has a Final already.
	ErrFinished = errors.New("durable: already finished")
	// ErrCorrupt: a stored value does not decode as what its key holds.
	ErrCorrupt = errors.New("durable: corrupt value")
	// ErrNewer: a stored value has a format version greater than Version.
	ErrNewer = errors.New("durable: value written by a newer version")
	// ErrUnavailable: JetStream could not be reached or did not answer in
	// time (timeout, no responders, connection closed or draining,
	// JetStream off or without a leader). The cause is wrapped too.
	ErrUnavailable = errors.New("durable: JetStream unavailable")
	// ErrInvalid: a bad argument (empty key or holder, TTL out of range)
	// or options, or a bucket that exists without the settings the store
	// needs.
	ErrInvalid = errors.New("durable: invalid argument")
	// ErrTooMany: a listing found more entries than its bound.
	ErrTooMany = errors.New("durable: too many entries")
)

// LeasedError is the error of Acquire when the lease is held: it wraps
// ErrLeased and names the holder.
type LeasedError struct {
	// Key is the request's key, Holder the id of who holds its lease.
	Key, Holder string
}

// Error says who holds the lease.
func (e *LeasedError) Error() string {
	return fmt.Sprintf("%s: %s held by %q", ErrLeased, e.Key, e.Holder)
}

// Unwrap returns ErrLeased.
func (e *LeasedError) Unwrap() error { return ErrLeased }

// Status values of a Final.
const (
	StatusDone      = "done"
	StatusFailed    = "failed"
	StatusCancelled = "cancelled"
)

// Record is a durable request accepted and not finished (key r.<k>).
type Record struct {
	// V is the format version; Accept sets it to Version.
	V int `msgpack:"v"`
	// ID is the request's id and Caller the identity that sent it; Key
	// of the two names the request.
	ID     string `msgpack:"id"`
	Caller string `msgpack:"c,omitempty"`
	// Sum is a hash of the request's identity (its body), computed by the
	// caller of Accept, so that the same id with another body is told
	// apart.
	Sum string `msgpack:"sum,omitempty"`
	// Body is the request, opaque to the store.
	Body []byte `msgpack:"b,omitempty"`
	// Reply is where the caller waits for the response, in ReplyCodec.
	Reply      string `msgpack:"r,omitempty"`
	ReplyCodec string `msgpack:"rc,omitempty"`
	// Steps is how many steps the request has.
	Steps int `msgpack:"n,omitempty"`
	// CreatedMS and DeadlineMS are Unix times in milliseconds, ResultTTLMS
	// how long the Final is kept.
	CreatedMS   int64 `msgpack:"ct,omitempty"`
	DeadlineMS  int64 `msgpack:"dl,omitempty"`
	ResultTTLMS int64 `msgpack:"ttl,omitempty"`
}

// Final is the outcome of a finished request (key f.<k>), kept for the
// request's result TTL.
type Final struct {
	// V is the format version; Finish sets it to Version.
	V int `msgpack:"v"`
	// ID, Caller and Sum are the Record's.
	ID     string `msgpack:"id"`
	Caller string `msgpack:"c,omitempty"`
	Sum    string `msgpack:"sum,omitempty"`
	// Status is StatusDone, StatusFailed or StatusCancelled.
	Status string `msgpack:"st"`
	// Response is the answer to send, opaque to the store.
	Response []byte `msgpack:"resp,omitempty"`
	// Planner is the id of the node that finished the request.
	Planner string `msgpack:"p,omitempty"`
	// Steps is how many steps the request has, StepsDone how many ended.
	Steps     int `msgpack:"n,omitempty"`
	StepsDone int `msgpack:"nd,omitempty"`
	// FinishedMS is when it finished, Unix time in milliseconds.
	FinishedMS int64 `msgpack:"fin,omitempty"`
}

// stepValue is the value of s.<k>.<sh>: the step's name, so that the hash
// in the key is checked, and its recorded result.
type stepValue struct {
	V     int    `msgpack:"v"`
	Name  string `msgpack:"n"`
	Value []byte `msgpack:"b,omitempty"`
}

// Key is the store key of the request id sent by caller: the lowercase hex
// of SHA-256(caller, 0x00, id), its first 32 digits. KV keys allow few
// bytes, so ids are hashed rather than escaped.
func Key(caller, id string) string {
	h := sha256.New()
	h.Write([]byte(caller))
	h.Write([]byte{0})
	h.Write([]byte(id))
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// stepHash is the <sh> of a step's key.
func stepHash(step string) string {
	sum := sha256.Sum256([]byte(step))
	return hex.EncodeToString(sum[:16])
}

// version reads only the V of a stored value.
type version struct {
	V int `msgpack:"v"`
}

// decode unmarshals b into v after checking its version: ErrCorrupt when
// b is not a value of this kind, ErrNewer when its version is above
// Version. what names the kind in the error.
func decode(what string, b []byte, v any) error {
	if err := checkMsgpack(b); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrCorrupt, what, err)
	}
	var ver version
	if err := msgpack.Unmarshal(b, &ver); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrCorrupt, what, err)
	}
	switch {
	case ver.V > Version:
		return fmt.Errorf("%w: %s has version %d, this node reads up to %d", ErrNewer, what, ver.V, Version)
	case ver.V < 1:
		return fmt.Errorf("%w: %s has version %d", ErrCorrupt, what, ver.V)
	}
	if err := msgpack.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrCorrupt, what, err)
	}
	return nil
}

// DecodeRecord decodes a stored Record.
func DecodeRecord(b []byte) (*Record, error) {
	var r Record
	if err := decode("record", b, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// DecodeFinal decodes a stored Final.
func DecodeFinal(b []byte) (*Final, error) {
	var f Final
	if err := decode("final", b, &f); err != nil {
		return nil, err
	}
	return &f, nil
}

// decodeStep decodes a stored step value.
func decodeStep(b []byte) (*stepValue, error) {
	var v stepValue
	if err := decode("step", b, &v); err != nil {
		return nil, err
	}
	return &v, nil
}

// encode marshals v (a value of this package's types: it cannot fail but
// for a bug, reported as an error all the same).
func encode(v any) ([]byte, error) {
	b, err := msgpack.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("durable: encoding: %w", err)
	}
	return b, nil
}
