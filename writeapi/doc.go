// Package writeapi is the write side of the parent's HTTP server: it takes
// posts from clients, checks them, and hands them to an Intake (the
// parent's post queue or its spool); it also answers the health probes.
// An Intake that takes no posts says why with a *Refusal (a status, a
// Retry-After, a message for the client): this package owns that
// contract, and the parent adapts its queue and spool to it. The read side is package readapi; the parent serves both
// from one route table (supervisor/http.go).
//
// # Routes
//
//	POST /post/enqueue   one post as a JSON object, or many as NDJSON (write token)
//	GET  /healthz        200 {"status":"ok"} while the process serves HTTP
//	GET  /readyz         200 {"status":"ready"}, or 503 {"status":"not ready","reason":"..."}
//
// HEAD is answered wherever GET is. Every response body is JSON
// (internal/httpjson: Content-Type: application/json, Cache-Control:
// no-store). Errors are {"error": "..."}: the message says what was wrong
// and what to send instead, so a client's log line is enough to fix the
// request. Unknown paths get 404, and other methods 405 with Allow, in that
// JSON form.
//
// The token is checked by the rule every guarded route of the parent
// shares (internal/token.Matches): "access_token: TOKEN", or
// "Authorization: Bearer TOKEN" with the scheme in any case and one or
// more spaces or tabs before the token; either header is enough. The
// health routes need none.
//
// # POST /post/enqueue
//
// A post is a JSON object with two string fields, each with something
// besides white space, the publication at most wire.MaxPublicationBytes
// (256) bytes after trimming and not "." or ".." (wire.CheckPost):
//
//	{"publication": "...", "content": "..."}
//
// Other fields ("title", for one) are ignored. A null
// field counts as absent. Field names are matched as encoding/json does,
// case-insensitively, and the last of duplicate keys wins.
//
// With Content-Type: application/x-ndjson (or application/ndjson;
// parameters are allowed) the body is one post per line; blank lines are
// skipped. Without a token, only the JSON and NDJSON types are taken (a
// browser sends other types cross-site without a CORS preflight). A body
// with Content-Encoding: gzip is decompressed; its decompressed size counts
// against MaxBody. The whole body is checked before anything is enqueued, and the
// posts are enqueued all or nothing, so a client may resend a refused batch
// whole without duplicating any post.
//
// Statuses, in the order the checks run:
//
//	405  method is not POST (Allow: POST)
//	401  a token is configured and the request does not carry it (the
//	     rule above)
//	503  the handler is draining (Retry-After)
//	400  the Content-Type header cannot be parsed
//	415  without a token, a Content-Type other than JSON or NDJSON, or
//	     none; in either mode, a Content-Encoding other than gzip
//	413  the body is longer than MaxBody (--max-body), decompressed or not
//	503  the body's buffer must grow and other requests hold BodyMemory
//	     (64 × --max-body) of bodies in memory already (Retry-After: 1).
//	     Buffers grow as bytes arrive: a client that declares a length
//	     and sends nothing holds no budget
//	408  the body stopped arriving: a read deadline passed (the parent
//	     cuts a body that makes no progress, --http-body-stall)
//	400  Content-Encoding: gzip and the body is not gzip
//	400  the body is not valid posts; for NDJSON the message starts
//	     with the 1-based line number ("line 3: ...")
//	413  the Intake refuses the batch for good: more posts than it can
//	     ever hold (--queue-size): split it
//	503  the Intake refuses for now, as its Refusal says: the queue or the
//	     spool is full (Retry-After, from the drain rate), closed because
//	     the service is shutting down, or the spool's disk is gone or
//	     failed (the message names the cause, never a file)
//	201  {"accepted": N}
//
// Any status but 201 means nothing from the request was enqueued. Every
// 503 carries Retry-After.
package writeapi
