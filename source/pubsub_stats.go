package source

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// pubsubStats are a Pub/Sub source's counts, kept once: the parent's
// metrics read them at scrape time (Collectors), /status through Stats.
type pubsubStats struct {
	received, acked, nacked, redelivered, deadLettered, outstanding atomic.Int64
	unreachable                                                     atomic.Bool
	ackSeconds                                                      prometheus.Histogram
}

func newPubSubStats() *pubsubStats {
	return &pubsubStats{ackSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "ingest_pubsub_ack_latency_seconds",
		Help:    "From a message's receipt to its acknowledgement: the wait for a worker, NER, the flush and the sink's commit.",
		Buckets: prometheus.ExponentialBuckets(0.01, 2, 14)})}
}

// Collectors are the source's metrics, for the parent's registry.
func (s *PubSub) Collectors() []prometheus.Collector {
	st := s.stats
	counter := func(name, help string, v *atomic.Int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(v.Load()) })
	}
	return []prometheus.Collector{
		counter("ingest_pubsub_messages_received_total", "Messages pulled from the subscription, redeliveries included.", &st.received),
		counter("ingest_pubsub_messages_acked_total", "Messages acknowledged: the batch counting each of their posts (or their dead letter) is stored.", &st.acked),
		counter("ingest_pubsub_messages_nacked_total",
			"Messages given back to the broker unstored (pulled as the drain began, or not stored within --drain-timeout): it redelivers them at once, to any node.", &st.nacked),
		counter("ingest_pubsub_messages_redelivered_total",
			"Messages delivered more than once (their delivery attempt is known only when the subscription has a dead-letter policy).", &st.redelivered),
		counter("ingest_pubsub_messages_dead_lettered_total",
			"Messages that were not a valid post, stored as dead letters with the reason, then acknowledged.", &st.deadLettered),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ingest_pubsub_messages_outstanding",
			Help: "Messages pulled and not yet acknowledged or given back: at most --pubsub-max-outstanding."},
			func() float64 { return float64(st.outstanding.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ingest_pubsub_subscription_reachable",
			Help: "1 while the subscription answers (checked every 5 s) and pulling works; 0 makes /readyz answer 503."},
			func() float64 { return b2f(!st.unreachable.Load()) }),
		st.ackSeconds,
	}
}

// PubSubStats is what /status shows of a Pub/Sub source.
type PubSubStats struct {
	Subscription string
	// Unreachable is why the subscription cannot be reached, "" while it
	// answers.
	Unreachable                                                     string
	Received, Acked, Nacked, Redelivered, DeadLettered, Outstanding int64
}

// Stats reads the counts.
func (s *PubSub) Stats() PubSubStats {
	st := s.stats
	out := PubSubStats{Subscription: s.cfg.Subscription,
		Received: st.received.Load(), Acked: st.acked.Load(), Nacked: st.nacked.Load(),
		Redelivered: st.redelivered.Load(), DeadLettered: st.deadLettered.Load(), Outstanding: st.outstanding.Load()}
	if err := s.Ready(); err != nil {
		out.Unreachable = err.Error()
	}
	return out
}
