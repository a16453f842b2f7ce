// Package wire is the framing and message set spoken between the ingest
// parent and its worker and saver child processes over their stdin and
// stdout pipes.
//
// # Frame layout
//
// Every frame is
//
//	+----------------------+--------+---------------------------+
//	| length: uint32, BE   | kind   | payload: msgpack          |
//	| (bytes that follow)  | 1 byte | length-1 bytes            |
//	+----------------------+--------+---------------------------+
//
// length counts the kind byte and the payload, so it is at least 1 and at
// most the decoder's maximum frame size (DefaultMaxFrame unless configured).
// A length outside that range is rejected before any payload is read, so a
// corrupt stream can never make the reader allocate more than the maximum.
//
// Payloads are msgpack arrays with fields in a fixed order (see the
// encode/decode methods in message.go); the array form keeps frames small
// and lets the decoder check every declared length against the bytes that
// remain before allocating.
//
// # Kinds
//
//	1 Hello  child → parent  first frame a child writes: protocol version, role, id, pid
//	2 Post   parent → worker one article: sequence number, publication, content, attempts,
//	                         idempotency key ("" for none)
//	3 Batch  worker → parent → saver
//	                         aggregated counts of every unkeyed post since the last flush,
//	                         each keyed post's counts apart, dead letters
//	4 Ack    saver → parent  a batch is stored (or was stored before), or why not; its
//	                         commits, writes, reads, and keyed posts counted before
//	5 Stop   parent → child  the STOP sentinel: finish what you hold, then exit 0
//	6 Heartbeat child → parent  every second, and after each post a worker
//	                         finishes: last post done, RSS, CPU time, draining
//
// # Handshake
//
// A child's first frame is a Hello. The parent compares its Version with
// Version and its Role and ID with what it started; a mismatch is refused
// with an error naming both sides (see CheckHello). Children only speak
// after the parent started them: the parent sets the environment variable
// named by CookieKey to CookieValue, and a child that does not see it
// refuses to run.
//
// # Ordering
//
// Posts to a worker carry a per-worker sequence number that increases by
// one. A Batch states Through, the last sequence it covers, and Posts, how
// many posts it covers, so the parent knows which accepted posts are already
// represented in a batch. A Batch split into several frames because of the
// frame limit carries Part/Parts; only the last part carries the post count.
//
// # Keyed posts
//
// A post with a Key (a broker's message id) is counted apart from the
// others: the worker sends its counts as one Batch.Keyed entry (its dead
// letter with the key), never merged and never split across parts, so
// that a sink can count it iff the key has not been applied before, in
// whatever batch it comes again. docs/storage.md ("Keyed posts, exactly
// once") describes how each sink does.
package wire
