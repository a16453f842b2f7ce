// Package config holds ingest's settings: one struct for every role, its
// flags with their defaults, and their validation, in one place.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"golang.org/x/net/idna"

	"github.com/ingest-dev/ingest/ner"
	"github.com/ingest-dev/ingest/sink"
	"github.com/ingest-dev/ingest/wire"
)

// Config is every setting of ingest. The parent passes the settings its
// children need on their command line (ChildArgs), so a child's config is
// the parent's.
type Config struct {
	Role wire.Role
	ID   int

	Listen        string
	Workers       int
	MaxWorkers    int
	Savers        int
	Sink          string
	DB            string
	Project       string
	CacheSize     int
	FlushInterval time.Duration
	TopN          int
	Skip          string
	NER           string
	QueueSize     int
	MaxBody       int64
	MaxConns      int
	// MaxConnsPerPeer (--max-connections-per-peer) is one client's share
	// of MaxConns: an IPv4 address, or an IPv6 /64.
	MaxConnsPerPeer int
	// BodyStall (--http-body-stall): a request body that goes this long
	// without a byte is cut.
	BodyStall     time.Duration
	ReadTimeout   time.Duration
	IdleTimeout   time.Duration
	TokenFile     string
	Token         string // from TokenFile or INGEST_TOKEN; never a flag (argv is visible in ps)
	ReadTokenFile string
	ReadToken     string // from ReadTokenFile or INGEST_READ_TOKEN, else Token
	DrainTimeout  time.Duration
	// PubSubSubscription (--pubsub-subscription) is a Cloud Pub/Sub
	// subscription to take posts from, projects/P/subscriptions/S
	// (Parse expands a bare S with --project); "" reads none.
	PubSubSubscription string
	// PubSubMaxOutstanding and PubSubMaxOutstandingBytes bound the
	// messages pulled and not yet acknowledged: the node's posts in
	// flight. Parse sets the first from --queue-size when not given.
	PubSubMaxOutstanding      int
	PubSubMaxOutstandingBytes ByteSize
	// PubSubMaxExtension is how long a message's ack deadline is
	// extended while the node holds it.
	PubSubMaxExtension time.Duration
	// PubSubStreams is the number of streaming pulls.
	PubSubStreams int
	// KeyTTL (--key-ttl) is how long the sink remembers the key of a
	// keyed post (a Pub/Sub message) after counting it: a redelivery
	// within it is not counted again (sink.Config.KeyTTL).
	KeyTTL      time.Duration
	Input       string
	Replay      string
	ReplayStale bool
	SpillDir    string
	// ReportJSON (--report-json) is where the parent writes what the run
	// did, as JSON, when it exits: supervisor.Report.
	ReportJSON string
	DataDir    string
	Durability string
	SpoolMax   ByteSize
	// SpoolDamaged (--spool-damaged) is what a start does with a damaged
	// spool: SpoolDamagedRepair or SpoolDamagedRefuse.
	SpoolDamaged string
	// InputRestart (--input-restart) reads --input from its first row
	// even where an earlier run on the data directory read part of it.
	InputRestart bool
	LogLevel     string
	LogFormat    string
	// CORSOrigins (--cors-origin, repeatable) may read the read API and
	// /status from pages of their own: each "*" or scheme://host[:port].
	CORSOrigins []string
	// Warnings are settings Parse accepted that an operator should still
	// hear about (a token file others can read, --cors-origin '*' without
	// a token), one sentence each, saying what to do. The parent logs
	// them at start.
	Warnings []string

	MaxRestarts      int
	RestartWindow    time.Duration
	PostTimeout      time.Duration
	HeartbeatTimeout time.Duration
	MaxAttempts      int
	WorkerMaxPosts   int
	WorkerMaxRSS     ByteSize

	Version bool // --version: print the build and exit; Parse skips the rest
}

// ByteSize is a flag value in bytes that accepts KiB, MiB and GiB suffixes.
type ByteSize int64

func (b *ByteSize) String() string {
	switch v := int64(*b); {
	case v == 0:
		return "0"
	case v%(1<<30) == 0:
		return fmt.Sprintf("%dGiB", v>>30)
	case v%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", v>>20)
	case v%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", v>>10)
	default:
		return strconv.FormatInt(v, 10)
	}
}

func (b *ByteSize) Set(s string) error {
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}} {
		if rest, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = rest, u.mult
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n < 0 {
		return fmt.Errorf("want a size such as 512MiB, 2GiB or a number of bytes")
	}
	*b = ByteSize(n * mult)
	return nil
}

// workersPerCPU is the default --max-workers per CPU: NER is CPU-bound, so
// more workers than a few per CPU only add memory (one model each).
const workersPerCPU = 4

// Default returns the defaults, as documented by the flags.
func Default() Config {
	return Config{
		Role:            wire.RoleParent,
		Listen:          "127.0.0.1:8000",
		Workers:         max(1, runtime.NumCPU()-1),
		MaxWorkers:      workersPerCPU * runtime.NumCPU(),
		Savers:          1,
		Sink:            sink.KindSQLite,
		DB:              "./ingest.db",
		CacheSize:       25000,
		FlushInterval:   2 * time.Second,
		TopN:            2000,
		Skip:            strings.Join(ner.DefaultSkip, ","),
		NER:             string(ner.DefaultEngine),
		QueueSize:       1024,
		Durability:      DurabilityFsync,
		SpoolMax:        1 << 30,
		SpoolDamaged:    SpoolDamagedRepair,
		MaxBody:         1 << 20,
		MaxConns:        1024,
		MaxConnsPerPeer: 256,
		BodyStall:       10 * time.Second,
		ReadTimeout:     30 * time.Second,
		IdleTimeout:     2 * time.Minute,
		DrainTimeout:    60 * time.Second,
		LogLevel:        "info",

		PubSubMaxOutstandingBytes: 256 << 20,
		PubSubMaxExtension:        10 * time.Minute,
		PubSubStreams:             1,
		KeyTTL:                    7 * 24 * time.Hour,
		LogFormat:                 "text",

		MaxRestarts:      10,
		RestartWindow:    time.Minute,
		PostTimeout:      30 * time.Second,
		HeartbeatTimeout: 10 * time.Second,
		MaxAttempts:      2,
	}
}

// Register defines every flag on fs, with c's current values as defaults.
func (c *Config) Register(fs *flag.FlagSet) {
	fs.StringVar((*string)(&c.Role), "role", string(c.Role), "process role: parent serves HTTP and starts the others; worker and saver are started by the parent, never by hand")
	fs.IntVar(&c.ID, "id", c.ID, "child id, set by the parent")
	fs.StringVar(&c.Listen, "listen", c.Listen, "HTTP address; a non-loopback address requires a token (--token-file or INGEST_TOKEN)")
	fs.IntVar(&c.Workers, "workers", c.Workers, "worker processes running NER; the default, max(1, CPUs-1), leaves a core to the parent and savers")
	fs.IntVar(&c.MaxWorkers, "max-workers", c.MaxWorkers, "the most --workers allowed, 4 × CPUs by default: each worker is a process that loads the NER model at once, so a mistyped --workers would exhaust memory; raise it knowingly")
	fs.IntVar(&c.Savers, "savers", c.Savers, "saver processes writing batches to the sink; one keeps up with many workers on SQLite")
	fs.StringVar(&c.Sink, "sink", c.Sink, "where counts are stored: sqlite (embedded), firestore (Cloud Firestore, shared by many ingest nodes), or none to discard them (NER and batching without storage: a dry run, or a measure of the pipeline alone)")
	fs.StringVar(&c.DB, "db", c.DB, "SQLite database file for --sink sqlite; created if missing")
	fs.StringVar(&c.Project, "project", c.Project, "Google Cloud project for --sink firestore (default $GOOGLE_CLOUD_PROJECT); FIRESTORE_EMULATOR_HOST selects an emulator")
	fs.IntVar(&c.CacheSize, "cache-size", c.CacheSize, "posts a worker aggregates before it flushes a batch: larger batches mean fewer, bigger commits; --flush-interval bounds the wait under light load")
	fs.DurationVar(&c.FlushInterval, "flush-interval", c.FlushInterval, "longest a post waits in a worker's cache before a flush, so results appear under light load")
	fs.IntVar(&c.TopN, "top-n", c.TopN, "entities per publication kept at each flush, most frequent first; 0 keeps all (exact counts)")
	fs.StringVar(&c.Skip, "skip-labels", c.Skip, "comma-separated entity labels not counted. The trained engine labels "+strings.Join(ner.Labels(ner.EngineTrained), ", ")+
		"; fast and prose label "+strings.Join(ner.Labels(ner.EngineFast), ", ")+". The default skips numbers, amounts, dates and times (CARDINAL, MONEY, ORDINAL, DATE, TIME), labels no engine here gives: every entity it finds counts")
	fs.StringVar(&c.NER, "ner", c.NER, "entity extractor: trained (ours, the default: a model trained from open corpora, far more often right than prose, headlines included; the model mapped once and shared by every worker), "+
		"fast (prose's model and exactly its output, tens of times faster than prose: what the exactness tests compare) or prose (the library itself)")
	fs.IntVar(&c.QueueSize, "queue-size", c.QueueSize, "posts the parent holds waiting for a worker; when full, clients get 503 with Retry-After. Keep it below what the workers process within --drain-timeout")
	fs.Int64Var(&c.MaxBody, "max-body", c.MaxBody, "largest accepted request body in bytes (1 MiB); larger bodies get 413")
	fs.DurationVar(&c.ReadTimeout, "http-read-timeout", c.ReadTimeout, "longest a client may take to send a whole request, body included (30s: 1 MiB at 40 KB/s); a slower one is cut off")
	fs.DurationVar(&c.IdleTimeout, "http-idle-timeout", c.IdleTimeout, "an idle keep-alive connection is closed after this (2m)")
	fs.IntVar(&c.MaxConns, "max-connections", c.MaxConns, "HTTP connections served at once (1024), so clients cannot exhaust the descriptors children need. At the cap a newcomer makes room: idle keep-alive connections are closed first (oldest first), then requests that have waited 250 ms or more for their client; only when none can go is it refused (503), though /healthz and /readyz are still answered")
	fs.IntVar(&c.MaxConnsPerPeer, "max-connections-per-peer", c.MaxConnsPerPeer, "of --max-connections, how many one client (an IPv4 address, an IPv6 /64) may hold (256); at its share its own idle or waiting connections make room first. Behind a reverse proxy every client is the proxy: raise it to --max-connections")
	fs.DurationVar(&c.BodyStall, "http-body-stall", c.BodyStall, "a request body that goes this long without a byte arriving is cut with 408 (10s), long before --http-read-timeout")
	fs.StringVar(&c.TokenFile, "token-file", c.TokenFile, "file holding the API token clients must send (header access_token or Authorization: Bearer); INGEST_TOKEN also sets it; empty means no auth, loopback only")
	fs.StringVar(&c.ReadTokenFile, "read-token-file", c.ReadTokenFile, "file holding the token for the read API, /status and /metrics; INGEST_READ_TOKEN also sets it; default: the --token-file token")
	fs.DurationVar(&c.DrainTimeout, "drain-timeout", c.DrainTimeout, "how long a shutdown may take to store every accepted post before children are killed")
	fs.StringVar(&c.PubSubSubscription, "pubsub-subscription", c.PubSubSubscription, "take posts from this Cloud Pub/Sub subscription, projects/P/subscriptions/S (or S, in --project), beside HTTP (--listen \"\" for none): "+
		"each message one post as POST /post/enqueue takes it, acknowledged once the batch counting it is stored; PUBSUB_EMULATOR_HOST selects an emulator. See docs/scaling.md")
	fs.IntVar(&c.PubSubMaxOutstanding, "pubsub-max-outstanding", c.PubSubMaxOutstanding, "messages pulled and not yet acknowledged, at most: the node's posts in flight (queue, workers' caches, batches being stored); "+
		"0 means 8 × --queue-size (8192). Workers flush every --pubsub-max-outstanding / (2 × --workers) posts at least, so that the bound never waits for --flush-interval")
	fs.Var(&c.PubSubMaxOutstandingBytes, "pubsub-max-outstanding-bytes", "bytes of messages pulled and not yet acknowledged, at most (256MiB): with --pubsub-max-outstanding, what bounds the node's memory when the sink stalls")
	fs.DurationVar(&c.PubSubMaxExtension, "pubsub-max-extension", c.PubSubMaxExtension, "how long a message's ack deadline is extended while this node holds it (10m); then Pub/Sub redelivers it to any node, and the sink still counts it once")
	fs.IntVar(&c.PubSubStreams, "pubsub-streams", c.PubSubStreams, "streaming pulls from the subscription (1): one carries thousands of messages a second from Cloud Pub/Sub; more help an emulator that sends one message per response")
	fs.DurationVar(&c.KeyTTL, "key-ttl", c.KeyTTL, "how long the sink remembers a Pub/Sub message it counted (168h, Pub/Sub's longest default retention): a redelivery within it is not counted again. Keep it at least the subscription's --message-retention-duration")
	fs.StringVar(&c.Input, "input", c.Input, "read posts from this NDJSON or CSV file (.gz allowed, - for stdin) instead of serving HTTP; drain, print a summary and exit")
	fs.StringVar(&c.Replay, "replay", c.Replay, "apply the batches in this spill file (written when --drain-timeout expired) to the sink, idempotently, and exit")
	fs.BoolVar(&c.ReplayStale, "replay-stale", c.ReplayStale, "with --replay, apply a spill file older than the sink remembers applied batches (6 days) anyway: a batch stored before the spill then counts twice")
	fs.StringVar(&c.DataDir, "data-dir", c.DataDir, "where the spool of accepted posts lives (a subdirectory ingest-spool, locked: one ingest per data directory); default: the directory of --db, or ./ingest-data with other sinks")
	fs.StringVar(&c.Durability, "durability", c.Durability, "fsync: a post is on disk (the spool, fsynced, shared by concurrent requests) before its 201, and survives the parent's death; none: posts wait in memory only, and a crash of the parent loses them")
	fs.Var(&c.SpoolMax, "spool-max", "bytes of accepted posts the spool may hold on disk before clients get 503 (1GiB); with --durability none, --queue-size bounds them in memory instead")
	fs.StringVar(&c.SpoolDamaged, "spool-damaged", c.SpoolDamaged, "what a start does when the spool was damaged (bytes that fail their checksum, segment files missing): repair moves what cannot be read to DATA/ingest-spool/quarantine, reports the records lost (log, /status, metrics) and goes on; refuse exits 2 naming the damage and changes nothing")
	fs.BoolVar(&c.InputRestart, "input-restart", c.InputRestart, "with --input, read the file from its first row even if an earlier run on this data directory read part of it (those rows are counted again); without it, a file shorter than what was read before is refused")
	fs.StringVar(&c.SpillDir, "spill-dir", c.SpillDir, "where a shutdown that runs out of --drain-timeout writes what it could not store (default: the directory of --db)")
	fs.StringVar(&c.ReportJSON, "report-json", c.ReportJSON, "when the parent exits, write what the run did to this file as JSON: how it ended (clean, input_unfinished, killed, failed, drain_incomplete, before_start), posts accepted, stored, dead-lettered and not stored, the sink's work, restarts; for scripts and tests, which then need not read the log. Default: none")
	fs.IntVar(&c.MaxRestarts, "max-restarts", c.MaxRestarts, "child restarts allowed per role within --restart-window; one more and ingest drains and exits non-zero, for systemd or a human to take over")
	fs.DurationVar(&c.RestartWindow, "restart-window", c.RestartWindow, "the window --max-restarts counts restarts in")
	fs.DurationVar(&c.PostTimeout, "post-timeout", c.PostTimeout, "a worker that makes no progress on a post for this long is killed and its posts go elsewhere")
	fs.DurationVar(&c.HeartbeatTimeout, "heartbeat-timeout", c.HeartbeatTimeout, "a child silent for this long (children send a heartbeat every second) is killed as hung")
	fs.IntVar(&c.MaxAttempts, "max-attempts", c.MaxAttempts, "a post that was being processed when this many workers crashed or hung is quarantined as a dead letter")
	fs.IntVar(&c.WorkerMaxPosts, "worker-max-posts", c.WorkerMaxPosts, "retire a worker (a fresh one first, then a clean STOP) after this many posts; 0 = never")
	fs.Var(&c.WorkerMaxRSS, "worker-max-rss", "retire a worker (a fresh one first, then a clean STOP) once its resident memory exceeds this, e.g. 1GiB; 0 = never")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "trace, debug, info, warn or error")
	fs.StringVar(&c.LogFormat, "log-format", c.LogFormat, "text or json")
	fs.Func("cors-origin", "an origin (scheme://host[:port]) whose web pages may read the read API, /status and the cloud SVG with a token of their own (CORS); repeat it for more, or * for any; default none: no CORS headers", func(v string) error {
		c.CORSOrigins = append(c.CORSOrigins, v)
		return nil
	})
	fs.BoolVar(&c.Version, "version", c.Version, "print the version, VCS revision, commit time and Go version, and exit")
}

// Parse parses args into a config starting from Default, loads the token
// and validates. Errors name the flag.
func Parse(name string, args []string, getenv func(string) string) (Config, error) {
	c := Default()
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	c.Register(fs)
	fs.SetOutput(os.Stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: %s [flags]\n\nIngest news articles over HTTP (or from --input), extract named entities in worker\nprocesses and store per-publication counts.\n\nFlags:\n", name)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if c.Version {
		return c, nil // nothing else matters to --version, not even a bad --listen
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q: ingest takes only flags (see --help)", fs.Arg(0))
	}
	if c.Project == "" {
		c.Project = getenv("GOOGLE_CLOUD_PROJECT")
	}
	if c.PubSubSubscription != "" && !strings.Contains(c.PubSubSubscription, "/") && c.Project != "" {
		c.PubSubSubscription = "projects/" + c.Project + "/subscriptions/" + c.PubSubSubscription
	}
	if c.PubSubMaxOutstanding == 0 {
		c.PubSubMaxOutstanding = pubsubOutstandingPerQueued * c.QueueSize
	}
	warnings, err := c.loadToken(getenv)
	if err != nil {
		return c, err
	}
	c.Warnings = append(c.Warnings, warnings...)
	if err := c.Validate(); err != nil {
		return c, err
	}
	if c.Role == wire.RoleParent && c.ReadToken == "" && slices.Contains(c.CORSOrigins, "*") {
		c.Warnings = append(c.Warnings, "--cors-origin '*' without a token lets every web page any browser on this machine opens read the read API and /status: "+
			"list the origins that need it, or set --read-token-file")
	}
	return c, nil
}

// loadToken reads the tokens into c and returns warnings about their files.
func (c *Config) loadToken(getenv func(string) string) (warnings []string, err error) {
	if c.Role != wire.RoleParent {
		return nil, nil
	}
	var w string
	if c.Token, w, err = readToken("--token-file", c.TokenFile, getenv("INGEST_TOKEN")); err != nil {
		return nil, err
	}
	if w != "" {
		warnings = append(warnings, w)
	}
	if c.ReadToken, w, err = readToken("--read-token-file", c.ReadTokenFile, getenv("INGEST_READ_TOKEN")); err != nil {
		return nil, err
	}
	if w != "" {
		warnings = append(warnings, w)
	}
	if c.ReadToken == "" {
		c.ReadToken = c.Token
	}
	return warnings, nil
}

// Tokens are the tokens in force, as ReloadTokens read them.
type Tokens struct {
	Write, Read string
	// Warnings about the files read, as Config.Warnings.
	Warnings []string
}

// ReloadTokens re-reads --token-file and --read-token-file, as the parent
// does on SIGHUP, and returns the tokens they hold. Tokens from the
// environment cannot change while the process runs. A token can be
// replaced this way, not added or removed: whether there is one decides
// the API's loopback rules, fixed at start. It never changes c, so it may
// run beside readers of c; it may block as long as the file system does
// (a hung network mount), never on a FIFO or a device, which it refuses.
func (c *Config) ReloadTokens(getenv func(string) string) (Tokens, error) {
	n := *c
	warnings, err := n.loadToken(getenv)
	if err != nil {
		return Tokens{}, err
	}
	if (n.Token == "") != (c.Token == "") {
		return Tokens{}, errors.New("a write token cannot be added or removed while ingest runs: restart it")
	}
	return Tokens{Write: n.Token, Read: n.ReadToken, Warnings: warnings}, nil
}

// maxTokenFile is the largest token file read: a token is a line.
const maxTokenFile = 64 << 10

// readToken returns the token in file, else env, and a warning when the
// file can be read by every user. Only a regular file is read: a FIFO
// without a writer would block the reader for ever, and a device (such as
// /dev/zero) never ends; the file is opened without blocking and checked
// before a byte is read.
func readToken(flagName, file, env string) (tok, warning string, err error) {
	if file == "" {
		return strings.TrimSpace(env), "", nil
	}
	f, err := os.OpenFile(file, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return "", "", fmt.Errorf("%s: %w: give a readable file holding the token", flagName, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", "", fmt.Errorf("%s: %w", flagName, err)
	}
	if !st.Mode().IsRegular() {
		return "", "", fmt.Errorf("%s %s is not a regular file (%s): put the token in a plain file", flagName, file, modeKind(st.Mode()))
	}
	if st.Size() > maxTokenFile {
		return "", "", fmt.Errorf("%s %s is %d bytes, more than a token (at most %d): name the file that holds only the token", flagName, file, st.Size(), maxTokenFile)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxTokenFile+1))
	if err != nil {
		return "", "", fmt.Errorf("%s: read %s: %w", flagName, file, err)
	}
	tok = strings.TrimSpace(string(b))
	if tok == "" {
		return "", "", fmt.Errorf("%s %s is empty: put the token in it, or drop the flag", flagName, file)
	}
	if st.Mode().Perm()&0o004 != 0 {
		warning = fmt.Sprintf("%s %s can be read by every user of this machine (mode %04o): chmod o-r %s, so that only ingest's user reads the token",
			flagName, file, st.Mode().Perm(), file)
	}
	return tok, warning, nil
}

// modeKind names a file type for a message.
func modeKind(m os.FileMode) string {
	switch {
	case m&os.ModeNamedPipe != 0:
		return "a FIFO"
	case m&os.ModeDevice != 0:
		return "a device"
	case m&os.ModeSocket != 0:
		return "a socket"
	case m.IsDir():
		return "a directory"
	}
	return m.Type().String()
}

// Validate checks every setting and names the flag of the first bad one.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	switch c.Role {
	case wire.RoleParent, wire.RoleWorker, wire.RoleSaver:
	default:
		bad("--role must be parent, worker or saver (got %q)", c.Role)
	}
	if c.Workers < 1 {
		bad("--workers must be at least 1 (got %d)", c.Workers)
	}
	if c.MaxWorkers < 1 {
		bad("--max-workers must be at least 1 (got %d)", c.MaxWorkers)
	} else if c.Workers > c.MaxWorkers {
		bad("--workers %d is more than --max-workers %d (the default is %d × the %d CPUs): each worker loads the NER model at start, so that many would exhaust memory; "+
			"lower --workers, or raise --max-workers if this machine has the memory", c.Workers, c.MaxWorkers, workersPerCPU, runtime.NumCPU())
	}
	if c.Savers < 1 {
		bad("--savers must be at least 1 (got %d)", c.Savers)
	}
	switch c.Sink {
	case sink.KindSQLite:
		if c.DB == "" {
			bad("--db must name a file when --sink is sqlite")
		}
	case sink.KindFirestore:
		if c.Project == "" {
			bad("--project (or GOOGLE_CLOUD_PROJECT) must name the Google Cloud project when --sink is firestore")
		}
	case sink.KindNone:
	default:
		bad("--sink must be one of %s (got %q)", strings.Join(sink.Kinds, ", "), c.Sink)
	}
	if c.CacheSize < 1 {
		bad("--cache-size must be at least 1 (got %d)", c.CacheSize)
	}
	if c.FlushInterval <= 0 {
		bad("--flush-interval must be positive (got %s)", c.FlushInterval)
	}
	if c.TopN < 0 {
		bad("--top-n must be 0 (all) or more (got %d)", c.TopN)
	}
	if !slices.Contains(ner.Engines, ner.Engine(c.NER)) {
		bad("--ner must be trained, fast or prose (got %q)", c.NER)
	}
	switch c.Durability {
	case DurabilityFsync, DurabilityNone:
	default:
		bad("--durability must be fsync or none (got %q)", c.Durability)
	}
	switch c.SpoolDamaged {
	case SpoolDamagedRepair, SpoolDamagedRefuse:
	default:
		bad("--spool-damaged must be repair or refuse (got %q)", c.SpoolDamaged)
	}
	if c.Durability == DurabilityFsync && c.SpoolMax < 1<<20 {
		bad("--spool-max must be at least 1MiB (got %s): it bounds the accepted posts kept on disk", &c.SpoolMax)
	}
	if c.QueueSize < 1 {
		bad("--queue-size must be at least 1 (got %d)", c.QueueSize)
	}
	if c.ReadTimeout <= 0 || c.IdleTimeout <= 0 {
		bad("--http-read-timeout and --http-idle-timeout must be positive (got %s, %s)", c.ReadTimeout, c.IdleTimeout)
	}
	if c.MaxConns < 1 {
		bad("--max-connections must be at least 1 (got %d)", c.MaxConns)
	}
	if c.MaxConnsPerPeer < 1 {
		bad("--max-connections-per-peer must be at least 1 (got %d); set it to --max-connections for no share per client", c.MaxConnsPerPeer)
	}
	if c.BodyStall <= 0 {
		bad("--http-body-stall must be positive (got %s)", c.BodyStall)
	}
	if c.MaxBody < 64 {
		bad("--max-body must be at least 64 bytes (got %d)", c.MaxBody)
	}
	if c.MaxRestarts < 0 {
		bad("--max-restarts must be 0 or more (got %d)", c.MaxRestarts)
	}
	if c.RestartWindow <= 0 {
		bad("--restart-window must be positive (got %s)", c.RestartWindow)
	}
	if c.PostTimeout <= 0 {
		bad("--post-timeout must be positive (got %s)", c.PostTimeout)
	}
	if c.HeartbeatTimeout < 2*time.Second {
		bad("--heartbeat-timeout must be at least 2s: children beat every second (got %s)", c.HeartbeatTimeout)
	}
	if c.MaxAttempts < 1 {
		bad("--max-attempts must be at least 1 (got %d)", c.MaxAttempts)
	}
	if c.WorkerMaxPosts < 0 {
		bad("--worker-max-posts must be 0 (never) or more (got %d)", c.WorkerMaxPosts)
	}
	if c.Input != "" && c.Replay != "" {
		bad("--input and --replay cannot be combined: run them one after the other")
	}
	if c.PubSubSubscription != "" {
		if c.Input != "" || c.Replay != "" {
			bad("--pubsub-subscription cannot be combined with --input or --replay: a node reads a subscription, or a file, or replays a spill")
		}
		if p := strings.Split(c.PubSubSubscription, "/"); len(p) != 4 || p[0] != "projects" || p[2] != "subscriptions" || p[1] == "" || p[3] == "" {
			bad("--pubsub-subscription must be projects/PROJECT/subscriptions/NAME, or NAME with --project (got %q)", c.PubSubSubscription)
		}
		if c.PubSubMaxOutstanding < 1 {
			bad("--pubsub-max-outstanding must be at least 1 (got %d)", c.PubSubMaxOutstanding)
		}
		if c.PubSubMaxOutstandingBytes < 1<<20 {
			bad("--pubsub-max-outstanding-bytes must be at least 1MiB (got %s): a message holds up to --max-body bytes", &c.PubSubMaxOutstandingBytes)
		}
		if c.PubSubMaxExtension < 10*time.Second {
			bad("--pubsub-max-extension must be at least 10s (got %s): Pub/Sub's shortest ack deadline", c.PubSubMaxExtension)
		}
		if c.PubSubStreams < 1 || c.PubSubStreams > 64 {
			bad("--pubsub-streams must be between 1 and 64 (got %d)", c.PubSubStreams)
		}
	}
	if c.DrainTimeout <= 0 {
		bad("--drain-timeout must be positive (got %s)", c.DrainTimeout)
	}
	if c.KeyTTL < time.Hour {
		bad("--key-ttl must be at least 1h (got %s): a message redelivered after its key is forgotten counts again; keep it at least the subscription's message retention", c.KeyTTL)
	}
	switch c.LogLevel {
	case "trace", "debug", "info", "warn", "error":
	default:
		bad("--log-level must be trace, debug, info, warn or error (got %q)", c.LogLevel)
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		bad("--log-format must be text or json (got %q)", c.LogFormat)
	}
	for _, o := range c.CORSOrigins {
		if err := checkOrigin(o); err != nil {
			errs = append(errs, err)
		}
	}
	if c.Role == wire.RoleParent && c.Input == "" && c.Replay == "" {
		if c.Listen == "" {
			if c.PubSubSubscription == "" {
				bad("--listen \"\" serves no HTTP, so nothing would bring posts: give --pubsub-subscription, or an address")
			}
		} else if err := checkListen(c.Listen, c.Token != ""); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func checkListen(addr string, haveToken bool) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--listen %q is not host:port: %w", addr, err)
	}
	if haveToken {
		return nil
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("--listen %s is not a loopback address and no token is set: set --token-file or INGEST_TOKEN, or listen on 127.0.0.1", addr)
}

// checkOrigin accepts "*" or an origin as browsers send it in Origin:
// http or https, a host, an optional port, nothing else.
func checkOrigin(o string) error {
	if o == "*" {
		return nil
	}
	bad := func(why string) error {
		return fmt.Errorf("--cors-origin %q %s: give an origin such as https://example.org or http://localhost:3000 (scheme://host[:port], no path), or *", o, why)
	}
	u, err := url.Parse(o)
	switch {
	case err != nil:
		return bad("cannot be parsed (" + err.Error() + ")")
	case u.Scheme != "http" && u.Scheme != "https":
		return bad("has no http or https scheme")
	case u.Host == "" || u.Hostname() == "":
		return bad("has no host")
	case u.User != nil || u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" ||
		strings.HasSuffix(o, "?") || strings.HasSuffix(o, "#"):
		return bad("has more than scheme://host[:port]")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return bad("has a bad port")
		}
		if (u.Scheme == "http" && p == "80") || (u.Scheme == "https" && p == "443") {
			return fmt.Errorf("--cors-origin %q names the default port of %s, which browsers leave out of Origin, so no request would match it: give %s://%s",
				o, u.Scheme, u.Scheme, u.Hostname())
		}
	} else if strings.HasSuffix(u.Host, ":") {
		return bad("has an empty port")
	}
	host := u.Hostname()
	for _, r := range host {
		if r >= utf8.RuneSelf {
			ascii, err := idna.Lookup.ToASCII(host)
			if err != nil {
				return bad("has a host that is not a valid internationalised domain name (" + err.Error() + ")")
			}
			return fmt.Errorf("--cors-origin %q has a host that is not ASCII; browsers send it in Origin as %s://%s (punycode), so no request would match: give that",
				o, u.Scheme, strings.Replace(u.Host, host, ascii, 1))
		}
	}
	return nil
}

// The --durability modes.
const (
	DurabilityFsync = "fsync"
	DurabilityNone  = "none"
)

// The --spool-damaged policies.
const (
	SpoolDamagedRepair = "repair"
	SpoolDamagedRefuse = "refuse"
)

// Spooled reports whether accepted posts go through the on-disk spool.
func (c *Config) Spooled() bool { return c.Durability == DurabilityFsync }

// DataDirectory is --data-dir, else the directory of the SQLite file, else
// ./ingest-data.
func (c *Config) DataDirectory() string {
	switch {
	case c.DataDir != "":
		return c.DataDir
	case c.Sink == sink.KindSQLite && c.DB != "":
		return filepath.Dir(c.DB)
	default:
		return "ingest-data"
	}
}

// SpoolDirectory is where the spool's files are: ingest-spool in the data
// directory.
func (c *Config) SpoolDirectory() string { return filepath.Join(c.DataDirectory(), "ingest-spool") }

// SpillDirectory is where unstored work is written when a drain runs out
// of time: --spill-dir, else the directory of the SQLite file, else ".".
func (c *Config) SpillDirectory() string {
	switch {
	case c.SpillDir != "":
		return c.SpillDir
	case c.Sink == sink.KindSQLite:
		return filepath.Dir(c.DB)
	}
	return "."
}

// SkipLabels is --skip-labels as a list.
func (c *Config) SkipLabels() []string {
	var out []string
	for _, l := range strings.Split(c.Skip, ",") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// pubsubOutstandingPerQueued is the default --pubsub-max-outstanding per
// --queue-size post: room for the queue, the workers' caches between
// flushes and the batches being stored, so that the bound rarely stalls
// the pipeline while it keeps memory flat.
const pubsubOutstandingPerQueued = 8

// WorkerCacheSize is the --cache-size the workers get: --cache-size, but
// with --pubsub-subscription at most a half share of
// --pubsub-max-outstanding per worker, because a message is acknowledged
// only once a flush counting it is stored: workers that held more than the
// bound between flushes would stop the pulling until --flush-interval.
func (c *Config) WorkerCacheSize() int {
	if c.PubSubSubscription == "" || c.Workers < 1 {
		return c.CacheSize
	}
	return max(1, min(c.CacheSize, c.PubSubMaxOutstanding/(2*c.Workers)))
}

// ChildArgs is the command line for a child of the given role and id: the
// settings it needs, nothing secret.
func (c *Config) ChildArgs(role wire.Role, id int) []string {
	args := []string{"--role=" + string(role), fmt.Sprintf("--id=%d", id),
		"--log-level=" + c.LogLevel, "--sink=" + c.Sink, "--db=" + c.DB, "--project=" + c.Project}
	if role == wire.RoleSaver {
		args = append(args, "--key-ttl="+c.KeyTTL.String())
	}
	if role == wire.RoleWorker {
		args = append(args,
			fmt.Sprintf("--cache-size=%d", c.WorkerCacheSize()),
			"--flush-interval="+c.FlushInterval.String(),
			fmt.Sprintf("--top-n=%d", c.TopN),
			"--skip-labels="+c.Skip,
			"--ner="+c.NER)
	}
	return args
}
