package web

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mailferry/mailferry/sync/mail/mailtest"

	"github.com/mailferry/mailferry/sync/batch"
)

// testPostgresURL is MAILFERRY_TEST_PG (testdata/postgres/postgres.sh)
// with a fresh schema first in the search path (mailtest.NeedPostgres: skipped
// without one, failed under MAILFERRY_TEST_REQUIRE=1).
func testPostgresURL(t *testing.T) string {
	t.Helper()
	base := mailtest.NeedPostgres(t)
	conn, err := pgx.Connect(t.Context(), base)
	if err != nil {
		t.Fatalf("PostgreSQL configured but not reachable: %v", err)
	}
	defer conn.Close(context.Background())
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	schema := "w" + hex.EncodeToString(b)
	if _, err := conn.Exec(t.Context(), "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if c, err := pgx.Connect(context.Background(), base); err == nil {
			_, _ = c.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
			c.Close(context.Background())
		}
	})
	sep := "?"
	if strings.Contains(base, "?") {
		sep = "&"
	}
	return base + sep + "search_path=" + schema
}

// fakeRunner: a1 copies 5 messages of 100 bytes, a2's login is refused,
// a3 copies 2 with 1 failed (partial), a4 and a5 (two-way syncs) hold
// their deletions back (exit 10).
func fakeRunner(_ context.Context, acct *batch.Account) batch.Outcome {
	switch acct.Row.ID {
	case "a1":
		return batch.Outcome{Totals: batch.Totals{Copied: 5, Bytes: 500}}
	case "a2":
		return batch.Outcome{ExitCode: 4, Error: "source: login rejected"}
	case "a4", "a5":
		return batch.Outcome{ExitCode: 10, Error: "deletions held back"}
	}
	return batch.Outcome{ExitCode: 3, Totals: batch.Totals{Copied: 2, Failed: 1, Bytes: 200}, Failures: []string{"INBOX uid 7: too large"}}
}

// runBatch loads 5 accounts, runs pass one with the fake runner to its
// end, then pauses the batch and queues pass two (which nothing runs).
func runBatch(t *testing.T, url string) *batch.Store {
	t.Helper()
	ctx := t.Context()
	rows, err := batch.Load(strings.NewReader("id,src,dst,src_auth,dst_auth\na1,maildir:/nonexistent/1,maildir:/nonexistent/2,,\na2,maildir:/nonexistent/3,maildir:/nonexistent/4,,\na3,maildir:/nonexistent/5,maildir:/nonexistent/6,,\na4,maildir:/nonexistent/7,maildir:/nonexistent/8,,\na5,maildir:/nonexistent/9,maildir:/nonexistent/10,,\n"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := batch.Open(ctx, batch.Config{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	if _, err := s.Load(ctx, "staff", rows); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pass(ctx, "staff", "one", batch.PassOptions{}); err != nil {
		t.Fatal(err)
	}
	w, err := batch.Open(ctx, batch.Config{URL: url, Workers: 2, Runner: batch.RunnerFunc(fakeRunner)})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	err = w.Wait(ctx, "staff", "one", 50*time.Millisecond)
	if stopErr := w.Stop(ctx); err == nil {
		err = stopErr
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Pause(ctx, "staff"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pass(ctx, "staff", "two", batch.PassOptions{}); err != nil {
		t.Fatal(err)
	}
	return s
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v %s", url, resp.StatusCode, err, b)
	}
	return string(b)
}

// TestStatusAndRiverUI: on both databases the JSON endpoint counts the
// passes as the fake runner left them, the page names the failed account
// and its reason, and River's UI, mounted at /riverui/, lists the jobs.
func TestStatusAndRiverUI(t *testing.T) {
	tests := []struct {
		name string
		url  func(t *testing.T) string
	}{
		{"sqlite", func(t *testing.T) string { return "sqlite:" + filepath.Join(t.TempDir(), "b.db") }},
		{"postgres", testPostgresURL},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := runBatch(t, tc.url(t))
			srv := New(s)
			ui, err := RiverUI(t.Context(), s.RiverClient(), srv.Logger)
			if err != nil || ui == nil {
				t.Fatalf("RiverUI = %v, %v", ui, err)
			}
			srv.RiverUI = ui
			hs := httptest.NewServer(srv.Handler())
			defer hs.Close()
			checkStatus(t, get(t, hs.URL+"/api/status"))
			page := get(t, hs.URL+"/")
			for _, want := range []string{`data-failed="one/a2"`, "source: login rejected", "paused"} {
				if !strings.Contains(page, want) {
					t.Errorf("page lacks %q", want)
				}
			}
			checkPageCounts(t, page)
			if jobs := get(t, hs.URL+"/riverui/api/jobs?state=available"); strings.Count(jobs, `"kind":"mailferry_account"`) != 5 {
				t.Errorf("river ui jobs: %s; want the 5 of pass two", jobs)
			}
			if !strings.Contains(get(t, hs.URL+"/riverui/"), "<html") {
				t.Errorf("river ui: no page")
			}
		})
	}
}

func checkStatus(t *testing.T, body string) {
	t.Helper()
	var st Status
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Batches) != 1 || len(st.Batches[0].Passes) != 2 {
		t.Fatalf("status %s: want one batch, two passes", body)
	}
	b := st.Batches[0]
	one, two := b.Passes[0], b.Passes[1]
	checks := []struct {
		what      string
		got, want int64
	}{
		{"pass one done", int64(one.Summary.States[batch.StateDone]), 1},
		{"pass one partial", int64(one.Summary.States[batch.StatePartial]), 1},
		{"pass one failed auth", int64(one.Summary.Classes[batch.ClassAuth]), 1},
		{"pass one held back", int64(one.Summary.States[batch.StateHeldBack]), 2},
		{"pass one copied", one.Summary.Totals.Copied, 7},
		{"pass one bytes", one.Summary.Totals.Bytes, 700},
		{"pass one finished", int64(one.Finished), 5},
		{"pass two pending", int64(two.Summary.States[batch.StatePending]), 5},
		{"batch pending (latest jobs)", int64(b.Summary.States[batch.StatePending]), 5},
		{"pass one failures listed", int64(len(one.Failed)), 1},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %d; want %d", c.what, c.got, c.want)
		}
	}
	if !b.Paused || one.ETASeconds != nil || two.ETASeconds != nil || one.MsgsPerSec <= 0 {
		t.Errorf("status: paused %v, ETAs %v %v, rate %v; want paused, no ETA (one over, two not started), a rate", b.Paused, one.ETASeconds, two.ETASeconds, one.MsgsPerSec)
	}
}

// checkPageCounts: the page's count cells of pass one and of the batch
// (whose accounts' latest jobs are pass two's, all pending) say what the
// fake runner did, the held back column included.
func checkPageCounts(t *testing.T, page string) {
	t.Helper()
	one := regexp.MustCompile(`(?s)<tr data-pass="one">(.*?)</tr>`).FindStringSubmatch(page)
	batchRow := regexp.MustCompile(`(?s)<table class="accounts">(.*?)</table>`).FindStringSubmatch(page)
	if one == nil || batchRow == nil {
		t.Fatalf("page has no row of pass one or no accounts table:\n%s", page)
	}
	tests := []struct {
		row, key, want string
	}{
		{one[1], "done", "1"}, {one[1], "partial", "1"}, {one[1], "held_back", "2"}, {one[1], "failed", "1"}, {one[1], "accounts", "5"},
		{batchRow[1], "held_back", "0"}, {batchRow[1], "pending", "5"},
	}
	for _, tc := range tests {
		m := regexp.MustCompile(`<td data-count="` + tc.key + `"[^>]*>([^<]*)</td>`).FindStringSubmatch(tc.row)
		if m == nil || m[1] != tc.want {
			t.Errorf("page cell %s = %v; want %s (row %s)", tc.key, m, tc.want, tc.row)
		}
	}
}

// TestPassETA: the remaining accounts at the pace of the finished ones.
func TestPassETA(t *testing.T) {
	start := time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)
	now := start.Add(10 * time.Minute)
	tests := []struct {
		name     string
		p        batch.PassOverview
		want     time.Duration
		wantOK   bool
		wantRate float64
	}{
		{"not started", batch.PassOverview{Summary: batch.Summary{Accounts: 4}}, 0, false, 0},
		{"none finished", batch.PassOverview{Started: start, Summary: batch.Summary{Accounts: 4}}, 0, false, 0},
		{"half", batch.PassOverview{Started: start, Finished: 2, Summary: batch.Summary{Accounts: 4, Totals: batch.Totals{Copied: 600}}}, 10 * time.Minute, true, 1},
		{"over", batch.PassOverview{Started: start, Ended: start.Add(5 * time.Minute), Finished: 4, Summary: batch.Summary{Accounts: 4, Totals: batch.Totals{Copied: 600}}}, 0, false, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := tc.p.ETA(now)
			msgs, _ := tc.p.Rate(now)
			if got != tc.want || ok != tc.wantOK || msgs != tc.wantRate {
				t.Errorf("ETA, Rate = %v %v %v; want %v %v %v", got, ok, msgs, tc.want, tc.wantOK, tc.wantRate)
			}
		})
	}
}

func TestHumanBytes(t *testing.T) {
	tests := []struct {
		n    int64
		want string
	}{{0, "0 B"}, {1023, "1023 B"}, {1536, "1.5 KiB"}, {5 << 30, "5.0 GiB"}}
	for _, tc := range tests {
		if got := humanBytes(tc.n); got != tc.want {
			t.Errorf("humanBytes(%d) = %q; want %q", tc.n, got, tc.want)
		}
	}
}
