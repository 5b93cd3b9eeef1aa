package batch

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are a worker's Prometheus metrics. Labels are states, classes
// and batch names: never an account, a URL or a secret.
type Metrics struct {
	running   *prometheus.GaugeVec
	runs      *prometheus.CounterVec
	messages  *prometheus.CounterVec
	bytes     *prometheus.CounterVec
	failures  *prometheus.CounterVec
	slotWaits *prometheus.CounterVec
}

// NewMetrics makes the metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		running: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "mailferry_batch_accounts_running", Help: "Accounts this worker is copying now.",
		}, []string{"batch"}),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mailferry_batch_account_runs_total",
			Help: "Runs (slices) of accounts that ended, by what became of the account: done, partial, held_back (a two-way sync held deletions back), failed, retry (retried later), snoozed (throttled, end of slice, stopping, paused), cancelled; class is the failure class.",
		}, []string{"batch", "outcome", "class"}),
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mailferry_batch_messages_total", Help: "Messages by what the runs did with them: copied, present (already in the destination), failed.",
		}, []string{"batch", "result"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mailferry_batch_bytes_copied_total", Help: "Bytes of the messages copied.",
		}, []string{"batch"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mailferry_batch_account_failures_total", Help: "Runs of accounts that failed, by class (auth, connect, tls, quota, checkpoint, usage, temporary).",
		}, []string{"batch", "class"}),
		slotWaits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mailferry_batch_slot_waits_total", Help: "Times an account was put back because its host group had no free slot.",
		}, []string{"batch", "group"}),
	}
	for _, c := range []prometheus.Collector{m.running, m.runs, m.messages, m.bytes, m.failures, m.slotWaits} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// start counts an account starting; the returned function counts its end.
func (m *Metrics) start(batch string) func() {
	if m == nil {
		return func() {}
	}
	g := m.running.WithLabelValues(batch)
	g.Inc()
	return g.Dec
}

// observe counts one run's outcome. The totals are this run's (not the
// pass's, which add earlier slices).
func (m *Metrics) observe(batch, outcome, class string, t Totals) {
	if m == nil {
		return
	}
	if outcome == "done" || outcome == "partial" || outcome == "cancelled" || (outcome == "snoozed" && class != ClassTemporary) {
		class = ""
	}
	m.runs.WithLabelValues(batch, outcome, class).Inc()
	m.messages.WithLabelValues(batch, "copied").Add(float64(t.Copied))
	m.messages.WithLabelValues(batch, "present").Add(float64(t.Present))
	m.messages.WithLabelValues(batch, "failed").Add(float64(t.Failed))
	m.bytes.WithLabelValues(batch).Add(float64(t.Bytes))
	if class != "" {
		m.failures.WithLabelValues(batch, class).Inc()
	}
}

// slotWait counts an account put back for want of a slot in group.
func (m *Metrics) slotWait(batch, group string) {
	if m != nil {
		m.slotWaits.WithLabelValues(batch, group).Inc()
	}
}
