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
//	2 Post   parent → worker one article: sequence number, publication, content, attempts
//	3 Batch  worker → parent → saver
//	                         aggregated counts of every post since the last flush
//	4 Ack    saver → parent  a batch is stored (or was stored before), or why not
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
package wire
