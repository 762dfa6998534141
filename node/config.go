package node

import (
	"crypto/rand"
	"encoding/base32"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/mpreg/mpreg/authz"
	"github.com/mpreg/mpreg/bus"
	"github.com/mpreg/mpreg/codec"
	"github.com/mpreg/mpreg/mesh"
	"github.com/mpreg/mpreg/planner"
	"github.com/mpreg/mpreg/schema"
)

// Config configures a Node. Zero fields take the defaults in DefaultConfig;
// Validate says which fields New refuses.
type Config struct {
	// Cluster is the cluster id. Default "default".
	Cluster string
	// NodeID is unique among live nodes. Default host name + "-" + 6 random
	// base32 characters.
	NodeID string
	// Name is a human-readable name, sent in hello.meta.name.
	Name string
	// Locs are the node's resource tags; every function offers them.
	Locs []string
	// Prefix is the subject prefix. Default "mpreg".
	Prefix string
	// AdvertisedURLs are the NATS URLs announced in hello. Default: the
	// connection's known servers.
	AdvertisedURLs []string
	// Meta is added to hello.meta.
	Meta map[string]string
	// Authz, when set, says which caller may run which function in the
	// requests this node plans (see package authz and SetAuthz). Nil
	// allows every caller everything.
	Authz *authz.Policy
	// NoDelegate turns off delegation: by default a run of steps that
	// only one other node can run is sent there in one message, to be run
	// there as a unit (docs/PROTOCOL.md §4.6), instead of step by step.
	NoDelegate bool
	// NoLocality turns off locality: by default a step whose inputs were
	// passed by reference goes to the eligible node that made the most
	// bytes of them, which reads them from its object cache, unless that
	// node is much busier than the least loaded one (docs/PROTOCOL.md §8).
	NoLocality bool
	// PlannerAckAfter is how long a request that asks for a planner ack
	// (schema.HeaderPlannerAck) is planned before the ack is sent: quick
	// requests never send one. Default 200 ms; negative sends it at once.
	PlannerAckAfter time.Duration
	// Gossip times the membership gossip.
	Gossip Gossip
	// Limits bound the requests this node plans and the steps it runs.
	Limits Limits
	// Objects configure the values passed by reference.
	Objects Objects
	// Hooks are told of what the node does.
	Hooks Hooks
}

// Gossip times the membership gossip (docs/PROTOCOL.md §3).
type Gossip struct {
	// HeartbeatInterval is the heartbeat period. Default 1 s.
	HeartbeatInterval time.Duration
	// DeadAfter is how long a silent peer stays routable; at least
	// HeartbeatInterval. Default 3 heartbeat intervals.
	DeadAfter time.Duration
	// ForgetAfter is how long a silent peer stays listed; at least
	// DeadAfter. Default 30 heartbeat intervals (DeadAfter when that is
	// longer).
	ForgetAfter time.Duration
	// SyncQuiet is how long the start-up sync waits after the last reply.
	// Default 200 ms.
	SyncQuiet time.Duration
}

// Limits bound the requests a node plans and the steps it runs. The
// bounds sent on the wire (in OVERLOADED and INVALID_REQUEST details, and
// as the heartbeat's load limit) are at most schema.MaxProtoInt.
type Limits struct {
	// MaxCommands is the most commands one request may hold. Default
	// planner.DefaultLimits().MaxCommands (1000).
	MaxCommands int
	// MaxNameLen is the longest command name, in bytes; at most
	// MaxStepNameLen, so that exec ids fit. Default
	// planner.DefaultLimits().MaxNameLen (256).
	MaxNameLen int
	// MaxDepth is the deepest nesting of lists and maps inside a
	// command's args or kwargs; at most codec.MaxDepth, which no decoded
	// value exceeds. Default planner.DefaultLimits().MaxDepth (64).
	MaxDepth int
	// DefaultTimeout is a request's budget when it gives no timeout_ms;
	// at most MaxTimeout. Default 30 s (MaxTimeout when that is shorter).
	DefaultTimeout time.Duration
	// MaxTimeout caps a request's timeout_ms. Default 10 min.
	MaxTimeout time.Duration
	// MaxRequests is the most whole requests this node plans at once; more
	// are answered OVERLOADED at once. Default 4096.
	MaxRequests int
	// MaxInflight is the most steps that run here at once. Default 256.
	MaxInflight int
	// MaxQueue is the most steps that wait for a run slot; more get
	// OVERLOADED. Default 1024.
	MaxQueue int
	// MaxBytesInFlight bounds the bytes of the steps this node's planner
	// has in flight to other nodes (exec requests and the replies expected
	// to them, see mesh.Flow); more steps wait. Default mesh.DefaultWindow
	// (64 MiB).
	MaxBytesInFlight int64
	// MaxPlanningBytes bounds the memory of the requests this node plans
	// at once: their decoded bodies and the results they hold. A request
	// that finds no room is answered OVERLOADED. Default 1 GiB.
	MaxPlanningBytes int64
	// MaxResultBytes bounds the results one request holds at once (a
	// result no step reads again is let go); past it the request fails
	// with PAYLOAD_TOO_LARGE. At most MaxPlanningBytes. Default
	// planner.DefaultMaxResultBytes (512 MiB; MaxPlanningBytes when that
	// is smaller).
	MaxResultBytes int64
	// MaxWaiting bounds the steps of the requests this node plans that
	// wait for a route (route_wait_ms) at once; a request with a step past
	// it is answered OVERLOADED (details.limit "max_waiting"). Each
	// waiting step also holds planner.WaitingStepBytes of
	// MaxPlanningBytes. Default planner.DefaultMaxWaiting (10,000).
	MaxWaiting int
	// MaxDurableTimeout caps the timeout_ms of a durable request
	// (docs/PROTOCOL.md §4.8), which may run far longer than others.
	// Default 24 h; at least MaxTimeout.
	MaxDurableTimeout time.Duration
	// MaxResultTTL caps a durable request's result_ttl_ms: how long its
	// outcome is kept after it ends, for status and get. It is also the
	// default. Default 24 h; at least 1 s.
	MaxResultTTL time.Duration
}

// Objects configure the values passed by reference through the cluster's
// JetStream object bucket (docs/PROTOCOL.md §4.7): which values go there,
// how large they may be, the node's cache of them, and when they are
// deleted.
type Objects struct {
	// InlineMax is the largest value, in bytes, that a step's result
	// carries inline; a larger one goes into the cluster's JetStream
	// object bucket and travels as a reference. Whatever it says, the
	// node uses at most half the connection's max payload (and logs so at
	// start). Without JetStream, values pass inline up to the max
	// payload, as they always did. Default DefaultInlineMax (256 KiB).
	InlineMax int
	// MaxBytes bounds a value passed by reference, stored or fetched:
	// past it a step fails with PAYLOAD_TOO_LARGE (details.limit
	// "max_object_bytes"). At least InlineMax. Default 1 GiB.
	MaxBytes int64
	// Cache bounds the bytes of the objects this node stored that it
	// keeps in memory, least recently used first out: a step that runs
	// here on a value made here reads it from memory instead of fetching
	// it (a step gets its own copy). The cache holds a []byte result as
	// the function returned it: a function must not change it afterwards.
	// Default 256 MiB.
	Cache int64
	// TTL is the max age of the objects of the cluster's bucket when this
	// node creates it: a backstop that removes what a planner that
	// stopped left behind. A bucket that exists keeps its own (the node
	// logs it once when it differs). At least 1 s. Default
	// bus.DefaultObjectTTL (1 h).
	TTL time.Duration
	// ResultTTL is how long the objects of the results of a request this
	// node planned stay in the bucket after its response, for the caller
	// to read (the caller may delete them sooner). Its other objects are
	// deleted when it ends. Default 10 min.
	ResultTTL time.Duration
	// MaxPendingDeletes bounds the object deletes the node holds for
	// later: past it the one due soonest is left to the bucket's max age.
	// Default 100,000.
	MaxPendingDeletes int
	// JetStreamProbe is how long the probe for JetStream, which holds the
	// bucket, that Start begins keeps asking while nothing answers: a
	// JetStream cluster answers only once it has elected a meta leader, a
	// moment after its servers start. Each ask waits at most
	// JetStreamProbeWait; "no responders" or "not enabled" ends the probe
	// at once. Start does not wait for it (see Node.JetStream). Default
	// 10 s.
	JetStreamProbe time.Duration
	// Replicas is how many servers of a JetStream cluster keep each of
	// the buckets a node creates: the object bucket and the buckets of
	// durable requests (a bucket that exists keeps its own). 1 to 5.
	// Default 1; 3 on a JetStream cluster of three or more servers, for
	// values and durable requests that survive a server.
	Replicas int
}

// DefaultInlineMax is Objects.InlineMax's default.
const DefaultInlineMax = 256 << 10

// MaxStepNameLen is the largest Limits.MaxNameLen: an exec id, "<rpc
// id>/<step name>", is at most schema.MaxExecIDLen bytes, and an rpc id
// schema.MaxRequestIDLen.
const MaxStepNameLen = schema.MaxExecIDLen - schema.MaxRequestIDLen - 1

// Hooks are told of what a node does. Every field is optional.
type Hooks struct {
	// Observer is told of every step this node's planner runs.
	Observer planner.Observer
	// Recorder is told of the requests this node plans, the steps it runs
	// and sends, and the gossip it hears: the hook for metrics (package
	// metrics implements it).
	Recorder Recorder
	// Interceptor wraps every call of a registered function on this node
	// (see Interceptor).
	Interceptor Interceptor
	// Logger. Default: discard.
	Logger *slog.Logger
}

// DefaultConfig returns the defaults, with a fresh random node id. The
// gossip's DeadAfter and ForgetAfter are left zero: they follow the
// HeartbeatInterval New is given.
func DefaultConfig() Config {
	pl := planner.DefaultLimits()
	return Config{
		Cluster:         bus.DefaultCluster,
		NodeID:          NewNodeID(),
		Prefix:          bus.DefaultPrefix,
		PlannerAckAfter: 200 * time.Millisecond,
		Gossip: Gossip{
			HeartbeatInterval: time.Second,
			SyncQuiet:         200 * time.Millisecond,
		},
		Limits: Limits{
			MaxCommands:       pl.MaxCommands,
			MaxNameLen:        pl.MaxNameLen,
			MaxDepth:          pl.MaxDepth,
			DefaultTimeout:    30 * time.Second,
			MaxTimeout:        10 * time.Minute,
			MaxRequests:       4096,
			MaxInflight:       256,
			MaxQueue:          1024,
			MaxBytesInFlight:  mesh.DefaultWindow,
			MaxPlanningBytes:  1 << 30,
			MaxResultBytes:    planner.DefaultMaxResultBytes,
			MaxWaiting:        planner.DefaultMaxWaiting,
			MaxDurableTimeout: 24 * time.Hour,
			MaxResultTTL:      24 * time.Hour,
		},
		Objects: Objects{
			InlineMax:         DefaultInlineMax,
			MaxBytes:          1 << 30,
			Cache:             256 << 20,
			TTL:               bus.DefaultObjectTTL,
			ResultTTL:         10 * time.Minute,
			MaxPendingDeletes: 100_000,
			JetStreamProbe:    10 * time.Second,
			Replicas:          1,
		},
	}
}

// NewNodeID returns host name + "-" + 6 random base32 characters, with the
// host name cut to fit the id rules.
func NewNodeID() string {
	host, _ := os.Hostname()
	var b strings.Builder
	for _, r := range host {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' {
			b.WriteRune(r)
		}
		if b.Len() >= 57 {
			break
		}
	}
	if b.Len() == 0 {
		b.WriteString("node")
	}
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	return b.String() + "-" + base32.StdEncoding.EncodeToString(rnd[:])[:6]
}

// Validate checks c as New takes it, its zero fields read as their
// defaults: the ids, the prefix, locs and what goes into hello.meta; no
// negative duration, count or size (PlannerAckAfter aside); and the fields
// against each other. Its error wraps ErrInvalidConfig and names the
// first field it refuses, e.g. "node: invalid config: Gossip.DeadAfter
// (200ms) must be at least Gossip.HeartbeatInterval (1s)".
func (c Config) Validate() error {
	_, err := c.withDefaults()
	return err
}

// withDefaults returns c with its zero fields set to the defaults, its
// slices copied, and Validate's verdict.
func (c Config) withDefaults() (Config, error) {
	d := DefaultConfig()
	orDefault(&c.Cluster, d.Cluster)
	orDefault(&c.NodeID, d.NodeID)
	orDefault(&c.Prefix, d.Prefix)
	orDefault(&c.PlannerAckAfter, d.PlannerAckAfter)
	c.Gossip = c.Gossip.withDefaults(d.Gossip)
	c.Limits = c.Limits.withDefaults(d.Limits)
	c.Objects = c.Objects.withDefaults(d.Objects)
	if c.Hooks.Logger == nil {
		c.Hooks.Logger = slog.New(slog.DiscardHandler)
	}
	c.Locs = slices.Clone(c.Locs)
	c.AdvertisedURLs = slices.Clone(c.AdvertisedURLs)
	if err := c.validateIDs(); err != nil {
		return c, err
	}
	if err := c.Gossip.validate(); err != nil {
		return c, err
	}
	if err := c.Limits.validate(); err != nil {
		return c, err
	}
	return c, c.Objects.validate()
}

func (g Gossip) withDefaults(d Gossip) Gossip {
	orDefault(&g.HeartbeatInterval, d.HeartbeatInterval)
	orDefault(&g.DeadAfter, 3*g.HeartbeatInterval)
	orDefault(&g.ForgetAfter, max(30*g.HeartbeatInterval, g.DeadAfter))
	orDefault(&g.SyncQuiet, d.SyncQuiet)
	return g
}

func (l Limits) withDefaults(d Limits) Limits {
	orDefault(&l.MaxCommands, d.MaxCommands)
	orDefault(&l.MaxNameLen, d.MaxNameLen)
	orDefault(&l.MaxDepth, d.MaxDepth)
	orDefault(&l.MaxTimeout, d.MaxTimeout)
	orDefault(&l.DefaultTimeout, min(d.DefaultTimeout, max(l.MaxTimeout, 0))) // a negative bound is refused
	orDefault(&l.MaxRequests, d.MaxRequests)
	orDefault(&l.MaxInflight, d.MaxInflight)
	orDefault(&l.MaxQueue, d.MaxQueue)
	orDefault(&l.MaxBytesInFlight, d.MaxBytesInFlight)
	orDefault(&l.MaxPlanningBytes, d.MaxPlanningBytes)
	orDefault(&l.MaxResultBytes, min(d.MaxResultBytes, max(l.MaxPlanningBytes, 0)))
	orDefault(&l.MaxWaiting, d.MaxWaiting)
	orDefault(&l.MaxDurableTimeout, max(d.MaxDurableTimeout, l.MaxTimeout))
	orDefault(&l.MaxResultTTL, d.MaxResultTTL)
	return l
}

func (o Objects) withDefaults(d Objects) Objects {
	orDefault(&o.InlineMax, d.InlineMax)
	orDefault(&o.MaxBytes, max(d.MaxBytes, int64(o.InlineMax)))
	orDefault(&o.Cache, d.Cache)
	orDefault(&o.TTL, d.TTL)
	orDefault(&o.ResultTTL, d.ResultTTL)
	orDefault(&o.MaxPendingDeletes, d.MaxPendingDeletes)
	orDefault(&o.JetStreamProbe, d.JetStreamProbe)
	orDefault(&o.Replicas, d.Replicas)
	return o
}

// planner returns the limits the planner checks a request against.
func (l Limits) planner() planner.Limits {
	return planner.Limits{MaxCommands: l.MaxCommands, MaxNameLen: l.MaxNameLen, MaxDepth: l.MaxDepth}
}

// orDefault sets *v to d when it is the zero value; a negative value is
// left for validate to refuse.
func orDefault[T string | int | int64 | time.Duration](v *T, d T) {
	var zero T
	if *v == zero {
		*v = d
	}
}

// invalid returns an error wrapping ErrInvalidConfig.
func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...)
}

// validateIDs checks what peers will read of the configuration: ids, the
// prefix, locs, and what goes into hello.meta.
func (c Config) validateIDs() error {
	if err := schema.CheckID(c.Cluster); err != nil {
		return invalid("Cluster: %s", schema.AsError(err).Message)
	}
	if err := schema.CheckID(c.NodeID); err != nil {
		return invalid("NodeID: %s", schema.AsError(err).Message)
	}
	if err := bus.CheckPrefix(c.Prefix); err != nil {
		return fmt.Errorf("%w: Prefix: %w", ErrInvalidConfig, err)
	}
	for i, l := range c.Locs {
		if err := schema.CheckLoc(l); err != nil {
			return invalid("Locs[%d]: %s", i, schema.AsError(err).Message)
		}
	}
	if len(c.Meta) > schema.MaxMeta-2 { // name and mpreg are added
		return invalid("Meta has %d entries, at most %d are allowed", len(c.Meta), schema.MaxMeta-2)
	}
	for k, v := range c.Meta {
		if len(k) > schema.MaxMetaKey || len(v) > schema.MaxMetaValue {
			return invalid("Meta[%s]: keys are at most %d bytes, values %d", schema.Clip(k), schema.MaxMetaKey, schema.MaxMetaValue)
		}
	}
	if len(c.Name) > schema.MaxMetaValue {
		return invalid("Name is %d bytes, at most %d are allowed", len(c.Name), schema.MaxMetaValue)
	}
	return nil
}

// duration is a named duration field, for nonNegative.
type duration struct {
	name string
	v    time.Duration
}

// nonNegative refuses the first negative duration of fs.
func nonNegative(fs []duration) error {
	for _, f := range fs {
		if f.v < 0 {
			return invalid("%s (%v) must not be negative (zero takes the default)", f.name, f.v)
		}
	}
	return nil
}

// validate checks the gossip timings, their defaults set.
func (g Gossip) validate() error {
	if err := nonNegative([]duration{
		{"Gossip.HeartbeatInterval", g.HeartbeatInterval}, {"Gossip.DeadAfter", g.DeadAfter},
		{"Gossip.ForgetAfter", g.ForgetAfter}, {"Gossip.SyncQuiet", g.SyncQuiet},
	}); err != nil {
		return err
	}
	if g.DeadAfter < g.HeartbeatInterval {
		return invalid("Gossip.DeadAfter (%v) must be at least Gossip.HeartbeatInterval (%v)", g.DeadAfter, g.HeartbeatInterval)
	}
	if g.ForgetAfter < g.DeadAfter {
		return invalid("Gossip.ForgetAfter (%v) must be at least Gossip.DeadAfter (%v)", g.ForgetAfter, g.DeadAfter)
	}
	return nil
}

// bound is a named count or size, for inRange.
type bound struct {
	name string
	v    int64
}

// inRange refuses the first bound of bs that is negative or past the
// largest protocol integer.
func inRange(bs []bound) error {
	for _, f := range bs {
		if f.v < 0 {
			return invalid("%s (%d) must not be negative (zero takes the default)", f.name, f.v)
		}
		if f.v > schema.MaxProtoInt {
			return invalid("%s (%d) must be at most %d, the largest protocol integer", f.name, f.v, int64(schema.MaxProtoInt))
		}
	}
	return nil
}

// validate checks the limits, their defaults set.
func (l Limits) validate() error {
	if err := inRange([]bound{
		{"Limits.MaxCommands", int64(l.MaxCommands)}, {"Limits.MaxNameLen", int64(l.MaxNameLen)},
		{"Limits.MaxDepth", int64(l.MaxDepth)}, {"Limits.MaxRequests", int64(l.MaxRequests)},
		{"Limits.MaxInflight", int64(l.MaxInflight)}, {"Limits.MaxQueue", int64(l.MaxQueue)},
		{"Limits.MaxBytesInFlight", l.MaxBytesInFlight}, {"Limits.MaxPlanningBytes", l.MaxPlanningBytes},
		{"Limits.MaxResultBytes", l.MaxResultBytes}, {"Limits.MaxWaiting", int64(l.MaxWaiting)},
	}); err != nil {
		return err
	}
	if err := nonNegative([]duration{{"Limits.DefaultTimeout", l.DefaultTimeout}, {"Limits.MaxTimeout", l.MaxTimeout}}); err != nil {
		return err
	}
	switch {
	case l.MaxDurableTimeout < l.MaxTimeout:
		return invalid("Limits.MaxDurableTimeout (%v) must be at least Limits.MaxTimeout (%v)", l.MaxDurableTimeout, l.MaxTimeout)
	case l.MaxResultTTL < time.Second:
		return invalid("Limits.MaxResultTTL (%v) must be at least 1s", l.MaxResultTTL)
	case l.DefaultTimeout > l.MaxTimeout:
		return invalid("Limits.DefaultTimeout (%v) must be at most Limits.MaxTimeout (%v)", l.DefaultTimeout, l.MaxTimeout)
	case l.MaxResultBytes > l.MaxPlanningBytes:
		return invalid("Limits.MaxResultBytes (%d) must be at most Limits.MaxPlanningBytes (%d): one request's results are held in the planning memory",
			l.MaxResultBytes, l.MaxPlanningBytes)
	case l.MaxDepth > codec.MaxDepth:
		return invalid("Limits.MaxDepth (%d) must be at most %d, the deepest nesting a codec decodes", l.MaxDepth, codec.MaxDepth)
	case l.MaxNameLen > MaxStepNameLen:
		return invalid("Limits.MaxNameLen (%d) must be at most %d, so that exec ids (\"<rpc id>/<step name>\") fit in %d bytes",
			l.MaxNameLen, MaxStepNameLen, schema.MaxExecIDLen)
	}
	return nil
}

// validate checks the object settings, their defaults set.
func (o Objects) validate() error {
	if err := inRange([]bound{
		{"Objects.InlineMax", int64(o.InlineMax)}, {"Objects.MaxBytes", o.MaxBytes}, {"Objects.Cache", o.Cache},
		{"Objects.MaxPendingDeletes", int64(o.MaxPendingDeletes)}, {"Objects.Replicas", int64(o.Replicas)},
	}); err != nil {
		return err
	}
	if o.Replicas > 5 {
		return invalid("Objects.Replicas (%d) must be 1 to 5", o.Replicas)
	}
	if err := nonNegative([]duration{{"Objects.TTL", o.TTL}, {"Objects.ResultTTL", o.ResultTTL},
		{"Objects.JetStreamProbe", o.JetStreamProbe}}); err != nil {
		return err
	}
	switch {
	case o.TTL < time.Second:
		return invalid("Objects.TTL (%v) must be at least 1s", o.TTL)
	case int64(o.InlineMax) > o.MaxBytes:
		return invalid("Objects.InlineMax (%d) must be at most Objects.MaxBytes (%d)", o.InlineMax, o.MaxBytes)
	}
	return nil
}
