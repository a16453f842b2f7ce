// Package input streams news posts out of a file for `ingest --input FILE`.
//
// A file is NDJSON or CSV, each plain or gzip-compressed. Reading is
// streamed: memory stays bounded by the longest line or record (at most
// about MaxRecordBytes, plus fixed buffers), however long the file is, so
// the 8.8 GB "All the News 2.0" CSV can be fed as is.
//
// # Detection
//
// Compression is detected by the gzip magic bytes (1f 8b), never by the
// file name. After decompression a UTF-8 byte order mark and leading
// whitespace are skipped; if the first remaining byte is '{' the input is
// NDJSON, otherwise it is CSV with a header row. Input that is empty (or
// holds only whitespace) is an empty NDJSON stream: Next returns io.EOF.
//
// # NDJSON
//
// One JSON object a line with string fields "publication" and "content",
// both non-empty; other fields (such as "title") are ignored. Keys match
// case-insensitively, as in encoding/json. Blank lines are skipped. A line
// longer than MaxRecordBytes is reported as a *RowError and skipped without
// buffering it.
//
// # CSV
//
// The first record is the header. The text column is "content" if present,
// else "article"; the publication column is "publication". Header names
// match case-insensitively after trimming spaces, which covers both "All the
// News" layouts:
//
//	v1:  ,id,title,publication,author,date,year,month,url,content
//	2.0: ,Unnamed: 0,date,year,month,day,author,title,article,url,section,publication
//
// Quoted fields may hold commas and newlines; stray quotes are accepted as
// literal text (the real data has them). A record longer than
// MaxRecordBytes is fatal, because a CSV reader cannot tell where such a
// record was meant to end (usually a quote that is never closed).
//
// # Errors
//
// Next returns a *RowError for a row that is not a valid post; the reader
// stays usable and the caller decides whether to count, log or stop. Any
// other error from Next is fatal for the stream.
package input
