// Package durable keeps a cluster's durable requests in JetStream, so that
// a request accepted by one planner finishes through another when the
// first dies, and runs once per id. It keeps them in two key-value buckets
// and needs nothing beyond JetStream: no storage, consensus or lease
// protocol of its own.
//
// # Keys
//
// A request is named by its key <k> = Key(caller, id): the first 32 hex
// digits of SHA-256(caller, 0x00, id) (KV keys cannot hold arbitrary ids).
// The requests bucket (RequestsBucket: "<prefix>-<cluster>-requests",
// file storage, no TTL of its own) holds
//
//	r.<k>       the Record of a request accepted and not finished
//	s.<k>.<sh>  a step's recorded result, <sh> the first 32 hex digits of
//	            SHA-256(step name); the value holds the name and the result
//	x.<k>       a cancel mark
//	f.<k>       the Final of a finished request, written with a per-key TTL
//	            (the request's result TTL): the server removes it then
//
// and the leases bucket (LeasesBucket: "<prefix>-<cluster>-leases", its
// TTL the lease TTL, 1 s to 3 s, with limit markers on) holds l.<k>, whose
// value is the id of the planner that runs the request.
//
// Values are msgpack maps with short keys and a format version "v"
// (Version); a value that does not decode is ErrCorrupt, one of a newer
// version ErrNewer, and no bytes make a decoder panic or allocate more
// than they hold.
//
// # Why JetStream is enough
//
// A KV create is a publish that expects the subject's last sequence to be
// 0 (or the revision of its delete marker): the stream applies it only if
// nothing was written to the subject since, so of concurrent creates
// exactly one succeeds. That one operation gives each guarantee: Accept
// creates r.<k> (one run per id), RecordStep creates s.<k>.<sh> (a step's
// result is recorded once; the loser reads the winner's), Finish creates
// f.<k> (one outcome), and Acquire creates l.<k> (one holder). A lease is
// renewed by an update that expects the last revision its holder wrote,
// so a holder whose lease lapsed, or was taken, finds out on its next
// renewal and stops (Lease.Lost). Expiry is the server's too: the leases
// bucket's max age removes a lease that is not renewed within the TTL and
// leaves a marker (header Nats-Marker-Reason: MaxAge) that key watchers
// receive, which is how the other nodes learn of a lapse (WatchLapses)
// without polling; the Final's per-key TTL (Nats-TTL) ends its keeping.
// With replicas, the stream's Raft group orders the writes; this package
// adds nothing to it.
//
// Entries older than a key's record (a step or cancel mark a planner that
// had lost its lease wrote after the request finished) belong to an earlier
// run of the same id and are ignored: revisions are stream sequences, so
// "older" is a comparison of revisions, not of clocks.
//
// # Timing
//
// A lease is renewed every third of its TTL. The file store checks ages on
// a timer that fires at most every 250 ms, so a lapse is seen about a
// quarter second after the TTL (230 to 270 ms measured on nats-server
// 2.15.2 with TTLs of 1 s and 3 s: go test -run TestLeaseLapse -v).
//
// # Errors
//
// Every method honours its ctx, and one without a deadline is given
// DefaultTimeout. A failure to reach JetStream (timeout, no responders,
// connection closed, JetStream off or without a leader) wraps
// ErrUnavailable as well as its cause, so the caller can answer a typed
// error and never hang.
package durable
