package batch

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// Metrics are a worker's metrics, served in the Prometheus text exposition
// format (version 0.0.4) by ServeHTTP. Labels are states, classes and
// batch names: never an account, a URL or a secret.
//
// They are written here rather than with Prometheus's client library: that
// library (with protobuf and procfs) is linked into every mailferry command
// and its package initialisation cost every run, a no-op copy too, about
// 2 ms of CPU at start, for six counters only a batch worker keeps.
type Metrics struct {
	mu   sync.Mutex
	fams []*family // sorted by name
}

// family is one metric and its samples, by label values.
type family struct {
	name, help, typ string
	labels          []string // the label names, as add is given them
	samples         map[string]*sample
}

type sample struct {
	values []string // label values, in the order of family.labels
	v      float64
}

// NewMetrics makes the metrics.
func NewMetrics() *Metrics {
	m := &Metrics{fams: []*family{
		{name: "mailferry_batch_accounts_running", typ: "gauge", labels: []string{"batch"},
			help: "Accounts this worker is copying now."},
		{name: "mailferry_batch_account_runs_total", typ: "counter", labels: []string{"batch", "outcome", "class"},
			help: "Runs (slices) of accounts that ended, by what became of the account: done, partial, held_back (a two-way sync held deletions back), failed, retry (retried later), snoozed (throttled, end of slice, stopping, paused), cancelled; class is the failure class."},
		{name: "mailferry_batch_messages_total", typ: "counter", labels: []string{"batch", "result"},
			help: "Messages by what the runs did with them: copied, present (already in the destination), failed."},
		{name: "mailferry_batch_bytes_copied_total", typ: "counter", labels: []string{"batch"},
			help: "Bytes of the messages copied."},
		{name: "mailferry_batch_account_failures_total", typ: "counter", labels: []string{"batch", "class"},
			help: "Runs of accounts that failed, by class (auth, connect, tls, quota, checkpoint, usage, temporary)."},
		{name: "mailferry_batch_slot_waits_total", typ: "counter", labels: []string{"batch", "group"},
			help: "Times an account was put back because its host group had no free slot."},
	}}
	for _, f := range m.fams {
		f.samples = map[string]*sample{}
	}
	slices.SortFunc(m.fams, func(a, b *family) int { return strings.Compare(a.name, b.name) })
	return m
}

// add adds d to the sample of metric name with labels given as name,
// value pairs.
func (m *Metrics) add(name string, d float64, labels ...string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	i := slices.IndexFunc(m.fams, func(f *family) bool { return f.name == name })
	if i < 0 {
		panic("batch: no metric " + name) // a programmer error
	}
	f := m.fams[i]
	values := make([]string, len(f.labels))
	for j := 0; j+1 < len(labels); j += 2 {
		values[slices.Index(f.labels, labels[j])] = labels[j+1]
	}
	key := strings.Join(values, "\x00")
	s := f.samples[key]
	if s == nil {
		s = &sample{values: values}
		f.samples[key] = s
	}
	s.v += d
}

// start counts an account starting; the returned function counts its end.
func (m *Metrics) start(batch string) func() {
	if m == nil {
		return func() {}
	}
	m.add("mailferry_batch_accounts_running", 1, "batch", batch)
	return func() { m.add("mailferry_batch_accounts_running", -1, "batch", batch) }
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
	m.add("mailferry_batch_account_runs_total", 1, "batch", batch, "outcome", outcome, "class", class)
	m.add("mailferry_batch_messages_total", float64(t.Copied), "batch", batch, "result", "copied")
	m.add("mailferry_batch_messages_total", float64(t.Present), "batch", batch, "result", "present")
	m.add("mailferry_batch_messages_total", float64(t.Failed), "batch", batch, "result", "failed")
	m.add("mailferry_batch_bytes_copied_total", float64(t.Bytes), "batch", batch)
	if class != "" {
		m.add("mailferry_batch_account_failures_total", 1, "batch", batch, "class", class)
	}
}

// slotWait counts an account put back for want of a slot in group.
func (m *Metrics) slotWait(batch, group string) {
	if m != nil {
		m.add("mailferry_batch_slot_waits_total", 1, "batch", batch, "group", group)
	}
}

// Values returns every sample, keyed as name{label="value",...} with the
// labels sorted by name (as the text format writes them).
func (m *Metrics) Values() map[string]float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]float64{}
	for _, f := range m.fams {
		for _, s := range f.samples {
			out[f.name+f.labelText(s)] = s.v
		}
	}
	return out
}

// ServeHTTP writes the metrics in the Prometheus text format, as a
// scraper expects at /metrics.
func (m *Metrics) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	_, _ = m.WriteTo(w)
}

// WriteTo writes the metrics in the Prometheus text format: each metric
// with samples, its HELP and TYPE, then its samples sorted by labels.
func (m *Metrics) WriteTo(w io.Writer) (int64, error) {
	m.mu.Lock()
	var b strings.Builder
	for _, f := range m.fams {
		if len(f.samples) == 0 {
			continue
		}
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n", f.name, helpEscaper.Replace(f.help), f.name, f.typ)
		lines := make([]string, 0, len(f.samples))
		for _, s := range f.samples {
			lines = append(lines, f.name+f.labelText(s)+" "+strconv.FormatFloat(s.v, 'g', -1, 64)+"\n")
		}
		slices.Sort(lines)
		for _, l := range lines {
			b.WriteString(l)
		}
	}
	m.mu.Unlock()
	n, err := io.WriteString(w, b.String())
	return int64(n), err
}

var (
	helpEscaper  = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
	labelEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)
)

// labelText is {name="value",...} of s, the labels sorted by name.
func (f *family) labelText(s *sample) string {
	idx := make([]int, len(f.labels))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int { return strings.Compare(f.labels[a], f.labels[b]) })
	parts := make([]string, len(idx))
	for k, i := range idx {
		parts[k] = f.labels[i] + `="` + labelEscaper.Replace(s.values[i]) + `"`
	}
	return "{" + strings.Join(parts, ",") + "}"
}
