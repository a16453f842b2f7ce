// Package load pushes a dataset at a running ingest parent over HTTP, the
// way a production client would, and reports what happened to every post.
// It is the logic of the ingest-load command.
//
// # What it sends
//
// Posts are read with package input (NDJSON or CSV, plain or gzip, "-" for
// standard input), streamed: memory does not grow with the file. Each post
// goes as one JSON object (Content-Type: application/json), or, with
// Config.Batch > 1, Batch posts go as one NDJSON request
// (application/x-ndjson), which the write API accepts all or nothing.
// Config.Connections goroutines send concurrently over as many keep-alive
// connections.
//
// # What it guarantees
//
// No post is dropped under backpressure: a 503 answer is a request the
// server refused whole, so the same request is sent again after the
// Retry-After the server asked for (capped by Config.MaxRetryWait), as
// often as it takes, and each such retry is counted. Every other outcome is
// counted by status and reported with the first error message the server
// gave for it, never skipped silently:
//
//	2xx              accepted (the write API answers 201 {"accepted": N})
//	503              retried, after Retry-After
//	other statuses   failed, counted under the status ("400", "413", ...)
//	no answer        failed, counted under "network": the connection broke,
//	                 so the server may or may not have taken the posts
//
// When the context given to Run ends (Ctrl-C in the command), no new
// request starts and no retry is waited for; requests in flight get their
// answer. Posts read but never accepted or failed are reported as
// abandoned, so that Read == Accepted + Failed + Abandoned always holds.
package load
