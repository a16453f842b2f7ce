package supervisor

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/ingest-dev/ingest/ner"
	"github.com/ingest-dev/ingest/spool"
	"github.com/ingest-dev/ingest/version"
	"github.com/ingest-dev/ingest/wire"
	"github.com/ingest-dev/ingest/writeapi"
)

// metrics are the parent's Prometheus metrics, on their own registry (no
// globals). The counts are the tally's, read at scrape time; per-child
// figures come from the children's heartbeats; the one thing kept here is
// the NER time histogram.
type metrics struct {
	reg        *prometheus.Registry
	nerSeconds prometheus.Histogram
	reloads    *prometheus.CounterVec
}

func newMetrics(p *parent) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		nerSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "ingest_ner_seconds",
			Help: "NER time per post, as the workers measure it.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ingest_token_reloads_total",
			Help: "SIGHUP's reloads of the token files, by outcome: applied, refused (a file could not be read), given_up (the read took over 5 s), skipped (the previous read still blocked)."},
			[]string{"outcome"}),
	}
	m.reg.MustRegister(tallyCollector{p.tally})
	v := version.Get()
	build := prometheus.NewGauge(prometheus.GaugeOpts{Name: "ingest_build_info",
		Help: "1, labelled with the build that runs: version, revision, dirty, goversion.",
		ConstLabels: prometheus.Labels{"version": v.Version, "revision": v.Revision,
			"dirty": strconv.FormatBool(v.Dirty), "goversion": v.GoVersion}})
	build.Set(1)
	engine := prometheus.NewGauge(prometheus.GaugeOpts{Name: "ingest_ner_info",
		Help:        "1, labelled with the NER engine that counts (--ner) and its model; a database counted by others is logged at start and shown in /status.",
		ConstLabels: prometheus.Labels{"engine": p.cfg.NER, "model": ner.Model(ner.Engine(p.cfg.NER))}})
	engine.Set(1)
	m.reg.MustRegister(build, engine)
	m.reg.MustRegister(m.nerSeconds, m.reloads,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ingest_queue_depth", Help: "Posts waiting for a worker."},
			func() float64 { return float64(p.posts.Len()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ingest_queue_capacity", Help: "--queue-size."},
			func() float64 { return float64(p.posts.Cap()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ingest_spool_bytes", Help: "Bytes of accepted posts and batches in the spool on disk (0 with --durability none)."},
			func() float64 {
				if p.spool == nil {
					return 0
				}
				b, _ := p.spool.Backlog()
				return float64(b)
			}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "ingest_spool_syncs_total", Help: "fdatasync calls that made accepted posts durable; each covers every request waiting for it."},
			func() float64 {
				if p.spool == nil {
					return 0
				}
				return float64(p.spool.Stats().Syncs)
			}),
		spoolGauge(p, "ingest_spool_available", "1 while the spool takes posts; 0 during a disk fault (posts get 503) or after a failed sync.",
			func(sp *spool.Spool) float64 { return b2f(sp.Err() == nil) }),
		spoolGauge(p, "ingest_spool_held_records", "Batch and done records waiting in memory for the spool's disk to take them (workers are not fed meanwhile).",
			func(sp *spool.Spool) float64 { return float64(sp.Stats().Held) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "ingest_spool_faults_total", Help: "Disk faults of the spool in this run (a write, a segment, the directory); each lasts until the spool can write again."},
			func() float64 {
				if p.spool == nil {
					return 0
				}
				return float64(p.spool.Stats().Faults)
			}),
		spoolGauge(p, "ingest_spool_lost_records", "Spool records the start found lost to damage (checksum failures, missing segments); 0 if none.",
			func(sp *spool.Spool) float64 { return float64(sp.Stats().LostRecords) }),
		spoolGauge(p, "ingest_spool_uncertain_posts", "Of the records lost to damage, those that may have been acknowledged posts no batch covers: possibly not counted.",
			func(sp *spool.Spool) float64 { return float64(sp.Stats().UncertainPosts) }),
		spoolGauge(p, "ingest_spool_quarantined_bytes", "Bytes the start moved from damaged spool segments to ingest-spool/quarantine.",
			func(sp *spool.Spool) float64 { return float64(sp.Stats().Quarantined) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ingest_batch_queue_depth", Help: "Batch parts waiting for a saver, and batches waiting for the spool to record them."},
			func() float64 { return float64(p.batches.len()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ingest_draining", Help: "1 while the parent drains for shutdown."},
			func() float64 { return b2f(p.draining()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ingest_hot_publication_writes_per_second",
			Help: "Writes a second this node made to its busiest publication document over the last minute, one per commit holding its documents, estimated from the parts stored (--sink firestore; 0 otherwise). Sum it over the nodes and hold it against Firestore's ~1 sustained write a second per document."},
			func() float64 {
				if p.hot == nil {
					return 0
				}
				_, r := p.hot.hottest()
				return r
			}),
		&childCollector{c: p.children},
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ingest_http_connections_open", Help: "HTTP connections open (--max-connections caps them)."},
			func() float64 {
				if p.conns == nil {
					return 0
				}
				return float64(p.conns.open.Load())
			}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "ingest_http_connections_refused_total", Help: "Connections answered 503 and closed: no place under --max-connections (or the peer's share) could be made, nor a spare one."},
			func() float64 {
				if p.conns == nil {
					return 0
				}
				return float64(p.conns.refused.Load())
			}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "ingest_http_connections_evicted_total", Help: "Connections closed to make room for a newcomer: idle keep-alive ones, or requests stalled on their client."},
			func() float64 {
				if p.conns == nil {
					return 0
				}
				return float64(p.conns.evicted.Load())
			}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "ingest_http_connections_spared_total", Help: "Probes and requests sent whole served on a spare place beyond --max-connections."},
			func() float64 {
				if p.conns == nil {
					return 0
				}
				return float64(p.conns.spared.Load())
			}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "ingest_http_connections_dropped_total", Help: "Connections closed before their first request head was complete (the head timeout, or the oldest when too many waited)."},
			func() float64 {
				if p.conns == nil {
					return 0
				}
				return float64(p.conns.dropped.Load())
			}),
	)
	return m
}

// spoolGauge is a gauge of the spool's state, 0 with --durability none.
func spoolGauge(p *parent, name, help string, f func(*spool.Spool) float64) prometheus.GaugeFunc {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 {
		if p.spool == nil {
			return 0
		}
		return f(p.spool)
	})
}

// registerWriteAPI adds the write API's refusals.
func (m *metrics) registerWriteAPI(h *writeapi.Handler) {
	m.reg.MustRegister(&rejectedCollector{h: h})
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

var rejectedDesc = prometheus.NewDesc("ingest_posts_rejected_total", "Requests refused, by reason.", []string{"reason"}, nil)

type rejectedCollector struct{ h *writeapi.Handler }

func (c *rejectedCollector) Describe(ch chan<- *prometheus.Desc) { ch <- rejectedDesc }

func (c *rejectedCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.h.Stats()
	for reason, n := range map[string]uint64{"bad_request": s.BadRequest, "too_large": s.TooLarge,
		"unauthorized": s.Unauthorized, "queue_full": s.QueueFull, "draining": s.Draining,
		"unsupported_media_type": s.Unsupported, "busy": s.Busy, "stalled": s.Stalled, "unavailable": s.Unavailable} {
		ch <- prometheus.MustNewConstMetric(rejectedDesc, prometheus.CounterValue, float64(n), reason)
	}
}

var (
	childLabels   = []string{"role", "id", "pid"}
	childUp       = prometheus.NewDesc("ingest_child_up", "1 for each running child process.", childLabels, nil)
	childCPU      = prometheus.NewDesc("ingest_child_cpu_seconds_total", "CPU time (user+system) of a child, from its heartbeats.", childLabels, nil)
	childRSS      = prometheus.NewDesc("ingest_child_resident_memory_bytes", "Resident memory of a child, from its heartbeats.", childLabels, nil)
	childInflight = prometheus.NewDesc("ingest_worker_posts_in_flight", "Posts a worker holds that no stored batch covers yet.", childLabels, nil)
)

// tallyCounters are the tally's counts as counters.
var tallyCounters = []struct {
	desc  *prometheus.Desc
	count func(Counts) int64
}{
	{counterDesc("ingest_posts_accepted_total", "Posts accepted over HTTP, from --input or from Pub/Sub messages, and found in the spool at start."),
		func(c Counts) int64 { return c.Accepted }},
	{counterDesc("ingest_posts_stored_total", "Posts whose counts the sink acknowledged."),
		func(c Counts) int64 { return c.Stored }},
	{counterDesc("ingest_dead_letters_total", "Posts stored as dead letters (quarantined: the worker processing them kept dying; or a broker's message that is not a post)."),
		func(c Counts) int64 { return c.DeadLettered }},
	{counterDesc("ingest_posts_returned_total", "Accepted posts of a broker's messages given back unstored as the run ended (a drain out of --drain-timeout): the broker redelivers them."),
		func(c Counts) int64 { return c.Returned }},
	{counterDesc("ingest_batches_committed_total", "Batch parts the sink acknowledged (flushes arrive as one part unless very large)."),
		func(c Counts) int64 { return c.Batches }},
	{counterDesc("ingest_batches_duplicate_total", "Batch parts the sink had already applied (replays after a saver crash)."),
		func(c Counts) int64 { return c.Duplicates }},
	{counterDesc("ingest_entity_writes_total", "Entity count rows written to the sink."),
		func(c Counts) int64 { return c.Entities }},
	{counterDesc("ingest_sink_commits_total", "Commits (SQLite transactions, Firestore commits) the savers made."),
		func(c Counts) int64 { return c.Commits }},
	{counterDesc("ingest_sink_writes_total", "Rows or documents the savers wrote, idempotency markers included."),
		func(c Counts) int64 { return c.Writes }},
	{counterDesc("ingest_sink_reads_total", "Key markers the savers read back (Firestore: a commit met keys counted before)."),
		func(c Counts) int64 { return c.Reads }},
	{counterDesc("ingest_duplicate_keys_total", "Keyed posts (Pub/Sub messages) delivered again after they were counted, and not counted twice."),
		func(c Counts) int64 { return c.DuplicateKeys }},
}

func counterDesc(name, help string) *prometheus.Desc { return prometheus.NewDesc(name, help, nil, nil) }

var restartsDesc = prometheus.NewDesc("ingest_child_restarts_total",
	"Children restarted or replaced, by role and reason (crashed, hung, retired, start_failed).", []string{"role", "reason"}, nil)

// tallyCollector reports the tally's counts and restarts at scrape time,
// from one snapshot, so that the counters of one scrape agree.
type tallyCollector struct{ t *tally }

func (c tallyCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range tallyCounters {
		ch <- m.desc
	}
	ch <- restartsDesc
}

func (c tallyCollector) Collect(ch chan<- prometheus.Metric) {
	counts := c.t.counts()
	for _, m := range tallyCounters {
		ch <- prometheus.MustNewConstMetric(m.desc, prometheus.CounterValue, float64(m.count(counts)))
	}
	for role, reasons := range c.t.restartCounts() {
		for reason, n := range reasons {
			ch <- prometheus.MustNewConstMetric(restartsDesc, prometheus.CounterValue, float64(n), string(role), reason)
		}
	}
}

// childCollector reports every current child at scrape time.
type childCollector struct{ c *children }

func (c *childCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{childUp, childCPU, childRSS, childInflight} {
		ch <- d
	}
}

func (c *childCollector) Collect(ch chan<- prometheus.Metric) {
	for _, st := range c.c.states() {
		labels := []string{string(st.role), strconv.Itoa(st.id), strconv.Itoa(st.pid)}
		ch <- prometheus.MustNewConstMetric(childUp, prometheus.GaugeValue, b2f(st.alive), labels...)
		ch <- prometheus.MustNewConstMetric(childCPU, prometheus.CounterValue, float64(st.cpuMillis)/1000, labels...)
		ch <- prometheus.MustNewConstMetric(childRSS, prometheus.GaugeValue, float64(st.rss), labels...)
		if st.role == wire.RoleWorker {
			ch <- prometheus.MustNewConstMetric(childInflight, prometheus.GaugeValue, float64(st.inflight), labels...)
		}
	}
}
