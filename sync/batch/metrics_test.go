package batch

import (
	"net/http/httptest"
	"strings"
	"testing"
)

// TestMetricsText: the metrics in the Prometheus text format as a scraper
// reads it: HELP and TYPE per metric with samples, samples sorted, labels
// sorted by name and escaped, a gauge going back down, no metric without
// samples.
func TestMetricsText(t *testing.T) {
	m := NewMetrics()
	done := m.start("staff")
	m.start(`we"ird\batch`)
	m.observe("staff", "failed", ClassAuth, Totals{Copied: 2, Bytes: 1500000})
	m.observe("staff", "done", ClassAuth, Totals{Copied: 3, Present: 1})
	done()
	rec := httptest.NewRecorder()
	m.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if ct := rec.Header().Get("Content-Type"); ct != "text/plain; version=0.0.4; charset=utf-8" {
		t.Errorf("Content-Type = %q", ct)
	}
	want := `# HELP mailferry_batch_account_failures_total Runs of accounts that failed, by class (auth, connect, tls, quota, checkpoint, usage, temporary).
# TYPE mailferry_batch_account_failures_total counter
mailferry_batch_account_failures_total{batch="staff",class="auth"} 1
# HELP mailferry_batch_account_runs_total Runs (slices) of accounts that ended, by what became of the account: done, partial, held_back (a two-way sync held deletions back), failed, retry (retried later), snoozed (throttled, end of slice, stopping, paused), cancelled; class is the failure class.
# TYPE mailferry_batch_account_runs_total counter
mailferry_batch_account_runs_total{batch="staff",class="",outcome="done"} 1
mailferry_batch_account_runs_total{batch="staff",class="auth",outcome="failed"} 1
# HELP mailferry_batch_accounts_running Accounts this worker is copying now.
# TYPE mailferry_batch_accounts_running gauge
mailferry_batch_accounts_running{batch="staff"} 0
mailferry_batch_accounts_running{batch="we\"ird\\batch"} 1
# HELP mailferry_batch_bytes_copied_total Bytes of the messages copied.
# TYPE mailferry_batch_bytes_copied_total counter
mailferry_batch_bytes_copied_total{batch="staff"} 1.5e+06
# HELP mailferry_batch_messages_total Messages by what the runs did with them: copied, present (already in the destination), failed.
# TYPE mailferry_batch_messages_total counter
mailferry_batch_messages_total{batch="staff",result="copied"} 5
mailferry_batch_messages_total{batch="staff",result="failed"} 0
mailferry_batch_messages_total{batch="staff",result="present"} 1
`
	if got := rec.Body.String(); got != want {
		t.Errorf("metrics:\n%s\nwant:\n%s", got, want)
	}
	if strings.Contains(rec.Body.String(), "slot_waits") {
		t.Error("a metric without samples was written")
	}
}
