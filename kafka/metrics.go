package kafka

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

var (
	descConsumed  = prometheus.NewDesc("apimeter_kafka_consumed_total", "Records read, per partition.", []string{"topic", "partition"}, nil)
	descMalformed = prometheus.NewDesc("apimeter_kafka_malformed_total", "Records skipped as unreadable, per partition.", []string{"topic", "partition"}, nil)
	descLag       = prometheus.NewDesc("apimeter_kafka_lag", "Records behind the partition's high watermark at the last fetch.", []string{"topic", "partition"}, nil)
	descPaired    = prometheus.NewDesc("apimeter_kafka_paired_total", "Calls made of a request and its response.", []string{"topic"}, nil)
	descOrphaned  = prometheus.NewDesc("apimeter_kafka_orphaned_total", "Halves stored without their other half: kind=no_response (a request) or no_request (a response).", []string{"topic", "kind"}, nil)
	descPending   = prometheus.NewDesc("apimeter_kafka_pending", "Halves waiting for their other half.", []string{"topic"}, nil)
	descStored    = prometheus.NewDesc("apimeter_kafka_stored_total", "Events newly stored.", []string{"topic"}, nil)
	descDup       = prometheus.NewDesc("apimeter_kafka_duplicates_total", "Events the store already had (redelivered).", []string{"topic"}, nil)
	descTruncated = prometheus.NewDesc("apimeter_kafka_truncated_total", "Events cut down to the per-event caps (and marked) before storing.", []string{"topic"}, nil)
)

// collector exports a Consumer's Stats when scraped.
type collector struct{ c *Consumer }

func (collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descConsumed, descMalformed, descLag, descPaired, descOrphaned, descPending, descStored, descDup, descTruncated} {
		ch <- d
	}
}

func (m collector) Collect(ch chan<- prometheus.Metric) {
	s := m.c.Stats()
	t := m.c.cfg.Topic
	for id, p := range s.Partitions {
		part := strconv.Itoa(int(id))
		ch <- prometheus.MustNewConstMetric(descConsumed, prometheus.CounterValue, float64(p.Consumed), t, part)
		ch <- prometheus.MustNewConstMetric(descMalformed, prometheus.CounterValue, float64(p.Malformed), t, part)
		ch <- prometheus.MustNewConstMetric(descLag, prometheus.GaugeValue, float64(p.Lag), t, part)
	}
	ch <- prometheus.MustNewConstMetric(descPaired, prometheus.CounterValue, float64(s.Paired), t)
	ch <- prometheus.MustNewConstMetric(descOrphaned, prometheus.CounterValue, float64(s.OrphanRequests), t, "no_response")
	ch <- prometheus.MustNewConstMetric(descOrphaned, prometheus.CounterValue, float64(s.OrphanResponses), t, "no_request")
	ch <- prometheus.MustNewConstMetric(descPending, prometheus.GaugeValue, float64(s.Pending), t)
	ch <- prometheus.MustNewConstMetric(descStored, prometheus.CounterValue, float64(s.Stored), t)
	ch <- prometheus.MustNewConstMetric(descDup, prometheus.CounterValue, float64(s.Duplicates), t)
	ch <- prometheus.MustNewConstMetric(descTruncated, prometheus.CounterValue, float64(s.Truncated), t)
}
