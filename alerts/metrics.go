package alerts

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the Prometheus series of evaluation and delivery.
type Metrics struct {
	tick            prometheus.Histogram
	ruleEval        *prometheus.HistogramVec // kind
	evaluations     *prometheus.CounterVec   // result: ok, error
	instances       *prometheus.GaugeVec     // state: pending, firing
	deliveries      *prometheus.CounterVec   // channel, outcome
	deliverySeconds *prometheus.HistogramVec // channel
}

// NewMetrics registers the series with reg (nil: unregistered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		tick: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "apimeter_alerts_tick_seconds", Help: "Time to evaluate every rule this process holds, per tick.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}),
		ruleEval: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "apimeter_alerts_rule_evaluation_seconds", Help: "Time of one query (of a rule, or of the rules sharing it) and the state changes it brings.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 5},
		}, []string{"kind"}),
		evaluations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "apimeter_alerts_evaluations_total", Help: "Rule evaluations by result (ok, error).",
		}, []string{"result"}),
		instances: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "apimeter_alerts_instances", Help: "Alert instances this process evaluates, by state (pending, firing).",
		}, []string{"state"}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "apimeter_alerts_deliveries_total", Help: "Notification delivery attempts by channel type and outcome (delivered, retry, failed).",
		}, []string{"channel", "outcome"}),
		deliverySeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "apimeter_alerts_delivery_seconds", Help: "Time of one delivery attempt.",
			Buckets: prometheus.DefBuckets,
		}, []string{"channel"}),
	}
	if reg != nil {
		reg.MustRegister(m.tick, m.ruleEval, m.evaluations, m.instances, m.deliveries, m.deliverySeconds)
	}
	return m
}
