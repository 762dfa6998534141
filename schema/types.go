package schema

// Wire types of docs/PROTOCOL.md §4–§7. Encoders use the json struct tags (the
// MessagePack codec reads the same tags). Decoding goes through the Parse*
// functions, which read a decoded value tree (see package codec) and name the
// key at fault in every error.
//
// User values (args, kwargs, results, details) are kept in the value model of
// package codec: nil, bool, int64, uint64 (only above MaxInt64), float64,
// string, []byte, []any and map[string]any.

// Proto is the protocol version this package speaks. ProtoMin and ProtoMax
// bound the versions a node accepts from peers.
const (
	Proto    = 1
	ProtoMin = 1
	ProtoMax = 1
)

// Results modes of a Request.
const (
	ResultsSinks = "sinks"
	ResultsAll   = "all"
)

// OnError modes of a Request: what a failed step does to the others.
const (
	// OnErrorStop: the first failure fails the request (the default).
	OnErrorStop = "stop"
	// OnErrorContinue: a failure fails only the steps that depend on the
	// failed one; the others run to the end.
	OnErrorContinue = "continue"
)

// Command is one step of a Request.
type Command struct {
	Name   string         `json:"name"`
	Fun    string         `json:"fun"`
	Args   []any          `json:"args,omitempty"`
	Kwargs map[string]any `json:"kwargs,omitempty"`
	Locs   []string       `json:"locs,omitempty"`
}

// Request is the body of an RPC request on P.<cluster>.rpc.
type Request struct {
	ID        string    `json:"id,omitempty"`
	Cmds      []Command `json:"cmds"`
	TimeoutMS int64     `json:"timeout_ms,omitempty"`
	// DeadlineMS is the caller's absolute deadline in unix milliseconds:
	// the request's budget ends then even if the planner reads it late.
	DeadlineMS int64  `json:"deadline_ms,omitempty"`
	Results    string `json:"results,omitempty"`
	// OnError is OnErrorStop (the default when empty) or OnErrorContinue.
	OnError string `json:"on_error,omitempty"`
	// RouteWaitMS: a step with no eligible node waits up to this long for
	// one to appear before NO_ROUTE.
	RouteWaitMS int64 `json:"route_wait_ms,omitempty"`
	// DryRun: plan the request and say where each step would run; run
	// nothing.
	DryRun bool `json:"dry_run,omitempty"`
	// Trace: the response carries one TraceEntry per step attempt.
	Trace bool `json:"trace,omitempty"`
	// Stream: the response is a stream of events on the reply subject
	// (HeaderEvent), the last of which is the response.
	Stream bool `json:"stream,omitempty"`
	// Progress: Stream, with the planned event at once and a step event
	// per finished step attempt.
	Progress bool `json:"progress,omitempty"`
	// SplitResults: a response whose results do not fit one message comes
	// in several, EventPart messages with some of the results ahead of the
	// response with the rest (docs/PROTOCOL.md §5.3).
	SplitResults bool `json:"split_results,omitempty"`
	// Durability: the request is recorded in JetStream and survives its
	// planner (docs/PROTOCOL.md §4.8).
	Durability
}

// Durability are a request's keys of docs/PROTOCOL.md §4.8.
type Durability struct {
	// Durable: the planner records the request, and each step's result,
	// in JetStream before it acknowledges it; another node takes it over
	// if its planner dies. A request id runs once.
	Durable bool `json:"durable,omitempty"`
	// Submit (with Durable): the answer is a Status, "accepted", at once;
	// the caller reads the outcome later on P.<cluster>.status.
	Submit bool `json:"submit,omitempty"`
	// ResultTTLMS: how long the outcome of a durable request is kept
	// after it ends. 0: the node's default (24 h); capped at its maximum.
	ResultTTLMS int64 `json:"result_ttl_ms,omitempty"`
}

// Response is the body of an RPC response. Exactly one of Results (success)
// or Error is meaningful; on failure Results holds the partial results.
type Response struct {
	ID      string         `json:"id"`
	Results map[string]any `json:"results"`
	Error   *Error         `json:"error,omitempty"`
	// Errors holds, for a request with on_error "continue", the error of
	// each step that failed or was skipped, by step name.
	Errors map[string]*Error `json:"errors,omitempty"`
	// Plan and Problems answer a dry run: each step with where it would
	// run, and what would keep the request from running.
	Plan     []PlanStep `json:"plan,omitempty"`
	Problems []*Error   `json:"problems,omitempty"`
	// Warnings answer a dry run too: what runs, but perhaps not as meant.
	Warnings []Warning `json:"warnings,omitempty"`
	// Trace answers a request with trace: one entry per step attempt.
	Trace []TraceEntry `json:"trace,omitempty"`
	// TraceTruncated: Trace lacks entries (the latest to start), left out
	// so that the response fits one message.
	TraceTruncated bool `json:"trace_truncated,omitempty"`
}

// TraceEntry is one attempt of one step: where it ran and when, relative
// to the planner's receipt of the request, in microseconds.
type TraceEntry struct {
	Step    string `json:"step"`
	Fun     string `json:"fun"`
	Node    string `json:"node"`
	Attempt int64  `json:"attempt"`
	StartUS int64  `json:"start_us"`
	QueueUS int64  `json:"queue_us"`
	RunUS   int64  `json:"run_us"`
	// FetchedBytes is the bytes the node fetched from the object bucket
	// for the step's arguments passed by reference (docs/PROTOCOL.md
	// §4.7); absent on the wire when 0.
	FetchedBytes int64 `json:"fetched_bytes,omitempty"`
	// Code is "ok" or the attempt's error code.
	Code string `json:"code"`
}

// Warning is a dry run's note on a request that runs, but perhaps not as
// its author meant: a string argument that looks like a reference to a
// command and is not one, so that it is passed as the string itself
// (docs/PROTOCOL.md §5.1).
type Warning struct {
	// Step is the command whose argument it is.
	Step string `json:"step"`
	// Key is the argument, as in errors: "cmds[0].args[1]",
	// "cmds[2].kwargs.x".
	Key     string `json:"key"`
	Message string `json:"message"`
	// Near is the command name the string is one edit away from; "" when
	// none (it starts with "|" and names no command).
	Near string `json:"near,omitempty"`
}

// PlanStep is one step of a dry run's plan.
type PlanStep struct {
	Name string   `json:"name"`
	Fun  string   `json:"fun"`
	Locs []string `json:"locs"`
	// Deps are the names of the steps it waits for.
	Deps []string `json:"deps"`
	// Candidates are the live nodes that offer Fun with every loc; empty
	// for a caller from another NATS account, who is not shown them.
	Candidates []string `json:"candidates"`
	// Node is the node the planner would pick now; nil when none, and
	// for a caller from another NATS account.
	Node *string `json:"node"`
	// Routable is whether a live node could take the step now.
	Routable bool `json:"routable"`
}

// ExecRequest is the body of a request on P.<cluster>.node.<node>.exec.
type ExecRequest struct {
	Cluster    string         `json:"cluster"`
	ID         string         `json:"id"`
	Fun        string         `json:"fun"`
	Args       []any          `json:"args"`
	Kwargs     map[string]any `json:"kwargs"`
	DeadlineMS int64          `json:"deadline_ms,omitempty"`
	// Attempt is unique to this one sending of the step (an optional
	// extension): a cancel names it, so that two callers that reuse an
	// rpc id never cancel each other's steps.
	Attempt string `json:"attempt,omitempty"`
	// Timing asks the node to say in its reply how long the step waited
	// for a run slot and ran (an optional extension, for trace).
	Timing bool `json:"timing,omitempty"`
}

// Cancel asks a node to cancel the exec with this id (an extension of
// docs/PROTOCOL.md §6, sent on P.<cluster>.node.<node>.cancel without a reply).
type Cancel struct {
	Cluster string `json:"cluster"`
	ID      string `json:"id"`
	Attempt string `json:"attempt,omitempty"`
}

// CancelRequest asks that the rpc request with ID be stopped, wherever it
// is planned (published without a reply on P.<cluster>.cancel). Its
// planner cancels every step of it: queued steps never start, running ones
// have their context cancelled, and the caller gets CANCELLED.
type CancelRequest struct {
	ID string `json:"id"`
}

// CancelAnswer is a node's answer to a cancel sent with a reply subject
// (docs/PROTOCOL.md §9): that node knew the request and stopped it. A node
// that did not know it does not answer.
type CancelAnswer struct {
	ID   string `json:"id"`
	Node string `json:"node"`
}

// PlannerAck tells a caller which node plans its rpc request (an extension
// of docs/PROTOCOL.md §4): a request with the header HeaderPlannerAck gets one,
// on the subject the header names, once it has been planned for a while.
// The caller can then notice the planner's death instead of waiting for
// the whole budget.
type PlannerAck struct {
	Cluster     string `json:"cluster"`
	ID          string `json:"id"`
	Planner     string `json:"planner"` // the node id ("planner", so that no gossip parser takes it for a node's message)
	Incarnation int64  `json:"incarnation"`
	Instance    string `json:"instance,omitempty"`
}

// HeaderEvent names the kind of each message of a streamed response:
// EventPlanned, EventStep, and last EventResult; and of a response sent
// in parts: EventPart, and last EventResult.
const HeaderEvent = "Mpreg-Event"

// The events of a streamed response, or of one sent in parts.
const (
	EventPlanned = "planned"
	EventStep    = "step"
	EventResult  = "result"
	// EventPart carries some of the results of a response that did not
	// fit one message, as a Response with only ID and Results.
	EventPart = "part"
)

// Planned is the body of a stream's planned event: which node plans the
// request, and how many steps it has.
type Planned struct {
	ID          string `json:"id"`
	Planner     string `json:"planner"`
	Incarnation int64  `json:"incarnation"`
	Instance    string `json:"instance,omitempty"`
	Steps       int64  `json:"steps"`
}

// HeaderPlannerAck is the request header naming the subject for the
// PlannerAck.
const HeaderPlannerAck = "Mpreg-Planner-Ack"

// ExecReply is the reply to an ExecRequest: Result (present even when nil)
// or Error.
type ExecReply struct {
	Result any    `json:"result"`
	Error  *Error `json:"-"`
	// Timing answers an ExecRequest with Timing.
	Timing *StepTiming `json:"timing,omitempty"`
}

// StepTiming is how long a step waited for a run slot and ran, in
// microseconds, on the node that ran it.
type StepTiming struct {
	QueueUS int64 `json:"queue_us"`
	RunUS   int64 `json:"run_us"`
	// FetchedBytes is the bytes fetched from the object bucket for the
	// step's arguments; absent on the wire when 0.
	FetchedBytes int64 `json:"fetched_bytes,omitempty"`
}

// Encodable returns the value to encode for r: {"result": v} or
// {"error": e}, as a struct (cheaper to encode than a map).
func (r *ExecReply) Encodable() any {
	if r.Error != nil {
		return ExecError{Error: r.Error, Timing: r.Timing}
	}
	return ExecResult{Result: r.Result, Timing: r.Timing}
}

// ExecResult is the wire form of a successful ExecReply.
type ExecResult struct {
	Result any         `json:"result"`
	Timing *StepTiming `json:"timing,omitempty"`
}

// ExecError is the wire form of a failed ExecReply.
type ExecError struct {
	Error  *Error      `json:"error"`
	Timing *StepTiming `json:"timing,omitempty"`
}

// Message kinds, in the kind key of hello and goodbye: replies to sync and
// info may be either, and say which (docs/PROTOCOL.md §7.4). Append-only.
const (
	KindHello   = "hello"
	KindGoodbye = "goodbye"
)

// Hello is a node's full capability announcement.
type Hello struct {
	Kind        string              `json:"kind,omitempty"` // KindHello
	Cluster     string              `json:"cluster"`
	Node        string              `json:"node"`
	Incarnation int64               `json:"incarnation"`
	Instance    string              `json:"instance,omitempty"`
	Version     int64               `json:"version"`
	Funs        map[string][]string `json:"funs"`
	Codecs      []string            `json:"codecs"`
	// Bare is the codec, besides JSON, that a message naming no codec may
	// be in on the node's exec and node rpc subjects, told by its first
	// byte; a peer sends such messages only when it is
	// codec.MsgPackType (optional; docs/PROTOCOL.md §6.2).
	Bare           string            `json:"bare,omitempty"`
	AdvertisedURLs []string          `json:"advertised_urls"`
	Meta           map[string]string `json:"meta,omitempty"`
	Proto          int               `json:"proto"`
	// Idempotent lists the functions that are safe to run twice
	// (optional; docs/PROTOCOL.md §7.1).
	Idempotent []string `json:"idempotent,omitempty"`
	// RetryAfterMS maps idempotent functions to how long one attempt may
	// take before a planner tries another node (optional extension).
	RetryAfterMS map[string]int64 `json:"retry_after_ms,omitempty"`
	// Retry maps functions to the retry policy a planner follows when a
	// step of theirs that ran on this node failed (optional;
	// docs/PROTOCOL.md §7.1 and §8).
	Retry map[string]RetryPolicy `json:"retry,omitempty"`
}

// RetryPolicy says how a planner tries again a step that failed
// (docs/PROTOCOL.md §8): up to Attempts attempts in all, the n-th retry
// after InitialBackoffMS × Multiplier^(n-1) ms, at most MaxBackoffMS
// (a day when 0), give or take Jitter of it at random.
type RetryPolicy struct {
	// Attempts is the number of attempts in all, the first included:
	// 1 (no retry) to MaxRetryAttempts.
	Attempts int64 `json:"attempts"`
	// InitialBackoffMS is the wait before the first retry, 0 to a day.
	InitialBackoffMS int64 `json:"initial_backoff_ms"`
	// MaxBackoffMS caps every wait, at least InitialBackoffMS; 0 is a
	// day.
	MaxBackoffMS int64 `json:"max_backoff_ms,omitempty"`
	// Multiplier grows the wait retry by retry, 1 to 100; 0 is 1.
	Multiplier float64 `json:"multiplier,omitempty"`
	// Jitter is the fraction of each wait added or taken away at
	// random, 0 to 1.
	Jitter float64 `json:"jitter,omitempty"`
}

// Load is a node's concurrency in a Heartbeat.
type Load struct {
	Inflight int64 `json:"inflight"`
	Limit    int64 `json:"limit"`
}

// Heartbeat is a node's periodic liveness message.
type Heartbeat struct {
	Cluster     string `json:"cluster"`
	Node        string `json:"node"`
	Incarnation int64  `json:"incarnation"`
	Instance    string `json:"instance,omitempty"`
	Version     int64  `json:"version"`
	Seq         int64  `json:"seq"`
	Load        Load   `json:"load"`
}

// Goodbye announces that a node is draining.
type Goodbye struct {
	Kind        string `json:"kind,omitempty"` // KindGoodbye
	Cluster     string `json:"cluster"`
	Node        string `json:"node"`
	Incarnation int64  `json:"incarnation"`
	Instance    string `json:"instance,omitempty"`
}
