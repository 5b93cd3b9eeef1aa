package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/mailferry/mailferry/internal/exitcode"
	"github.com/mailferry/mailferry/sync/batch"
	"github.com/mailferry/mailferry/sync/batch/web"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

// updateScreenshot rewrites docs/batch-status.png (also with
// MAILFERRY_UPDATE_SCREENSHOT=1).
var updateScreenshot = flag.Bool("update-screenshot", false, "rewrite docs/batch-status.png from the batch status page test")

// screenshotPath is the committed picture of the status page.
const screenshotPath = "../../docs/batch-status.png"

// needChromium finds Debian's chromium; under MAILFERRY_TEST_REQUIRE=1 a
// missing one fails the test instead of skipping it.
func needChromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv(mailtest.EnvRequire) == "1" {
		t.Fatal("chromium not found (apt-get install chromium; .ci/run installs it)")
	}
	t.Skip("chromium not found (apt-get install chromium)")
	return ""
}

// newChromium starts a headless Chromium with a fresh profile.
func newChromium(t *testing.T, path string) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1400, 900),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	ctx, cancelBrowser := chromedp.NewContext(actx)
	t.Cleanup(cancelBrowser)
	return ctx
}

// TestBatchServeChromium: a batch of 4 Dovecot accounts ran (one with a
// wrong password failed as auth), then was paused with a second pass
// queued: the status page, loaded in a real headless Chromium, shows the
// counts the database holds (read through Store.Report, not the page's
// own reader), the failed account's class and reason, and the JSON
// endpoint agrees; River's UI lists the queued jobs.
func TestBatchServeChromium(t *testing.T) {
	chromium := needChromium(t)
	d := mailtest.NeedDovecot(t)
	accts := newBatchAccounts(t, d, 4)
	accts[1].wrongSrcPassword = true
	dir := t.TempDir()
	env := map[string]string{"HOME": dir}
	csv := writeBatchCSV(t, dir, accts, env)
	db := filepath.Join(dir, "staff.batch.db")
	env["MAILFERRY_DB"] = "sqlite:" + db

	steps := [][]string{
		{"batch", "run", csv, "--workers", "2", "--ca-file", d.CAFile, "--slice", "2m"},
		{"batch", "pause", "staff"},
		{"batch", "pass", "staff", "delta"},
	}
	wantCodes := []int{exitcode.Partial, exitcode.OK, exitcode.OK}
	for i, args := range steps {
		if code, stdout, stderr := runCLI(t, env, args...); code != wantCodes[i] {
			t.Fatalf("mailferry %v = %d, stdout %q, stderr %q; want %d", args, code, stdout, stderr, wantCodes[i])
		}
	}

	want := readBatchTruth(t, "sqlite:"+db)
	h, closeFn, err := newBatchStatusHandler(t.Context(), &batchServeOptions{db: db, dbEnv: "MAILFERRY_DB"}, &cliEnv{stdin: strings.NewReader(""), stdout: io.Discard, stderr: io.Discard, getenv: func(k string) string { return env[k] }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(closeFn)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)

	ctx := newChromium(t, chromium)
	got, png := readStatusPage(ctx, t, srv.URL, want.failed.ID)
	for key, w := range want.counts {
		if got[key] != w {
			t.Errorf("page %s = %q; database says %q", key, got[key], w)
		}
	}
	checkStatusJSON(t, srv.URL, want)
	checkRiverUI(ctx, t, srv.URL)
	checkPNG(t, png) // docs/batch-status.png shows a running batch: TestBatchServeDuringRun
}

// batchTruth is what the database says, as the page should show it.
type batchTruth struct {
	counts map[string]string // page selector key -> text
	failed batch.Line
}

// readBatchTruth reads the database through Store.Report.
func readBatchTruth(t *testing.T, url string) batchTruth {
	t.Helper()
	s, err := batch.Open(t.Context(), batch.Config{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	truth := batchTruth{counts: map[string]string{}}
	for _, scope := range []string{"", "run", "delta"} {
		lines, err := s.Report(t.Context(), "staff", scope)
		if err != nil {
			t.Fatal(err)
		}
		sum := batch.Summarize(lines)
		for _, st := range []string{"accounts", "done", "failed", "pending"} {
			n := sum.States[st]
			if st == "accounts" {
				n = sum.Accounts
			}
			truth.counts[scope+"/"+st] = strconv.Itoa(n)
		}
		truth.counts[scope+"/copied"] = strconv.FormatInt(sum.Totals.Copied, 10)
		for _, l := range lines {
			if scope == "run" && l.State == batch.StateFailed {
				truth.failed = l
			}
		}
	}
	// The batch as a whole: every account's latest job is the paused
	// delta pass's; the run pass: 3 done, 1 failed (auth).
	if truth.counts["/pending"] != "4" || truth.counts["run/done"] != "3" || truth.failed.Class != batch.ClassAuth {
		t.Fatalf("database: %v, failed %+v; want 4 pending overall, 3 done in run and an auth failure", truth.counts, truth.failed)
	}
	truth.counts["run/failed-class"] = truth.failed.Class
	return truth
}

// readStatusPage loads the page and reads the counts the truth names.
func readStatusPage(ctx context.Context, t *testing.T, url, failedID string) (map[string]string, []byte) {
	t.Helper()
	// The first Run starts the browser and binds it to its context: no
	// timeout there (chromedp's rule); the reads after it have one.
	if err := chromedp.Do(ctx, chromedp.Navigate(url+"/")); err != nil {
		t.Fatalf("chromium: %v", err)
	}
	tctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	sels := map[string]string{
		"run/failed-class": `tr[data-failed="run/` + failedID + `"] td[data-field="class"]`,
		"run/reason":       `tr[data-failed="run/` + failedID + `"] td[data-field="reason"]`,
	}
	for _, scope := range []string{"", "run", "delta"} {
		for _, key := range []string{"accounts", "done", "failed", "pending", "copied"} {
			sel := `section[data-batch="staff"] table.accounts td[data-count="` + key + `"]`
			if scope != "" {
				sel = `section[data-batch="staff"] tr[data-pass="` + scope + `"] td[data-count="` + key + `"]`
			}
			sels[scope+"/"+key] = sel
		}
	}
	got := map[string]string{}
	for key, sel := range sels {
		text, err := chromedp.Run(tctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("chromium: %s (%s): %v", key, sel, err)
		}
		got[key] = strings.TrimSpace(text)
	}
	if got["run/reason"] == "" {
		t.Errorf("page: the failed account shows no reason")
	}
	png, err := chromedp.Run(tctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("chromium screenshot: %v", err)
	}
	return got, png
}

// checkStatusJSON: /api/status has the same numbers.
func checkStatusJSON(t *testing.T, url string, want batchTruth) {
	t.Helper()
	resp, err := http.Get(url + "/api/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st web.Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	if len(st.Batches) != 1 || len(st.Batches[0].Passes) != 2 {
		t.Fatalf("/api/status: %+v; want one batch of two passes", st)
	}
	b := st.Batches[0]
	got := map[string]string{"/accounts": strconv.Itoa(b.Summary.Accounts), "/pending": strconv.Itoa(b.Summary.States["pending"]),
		"run/done": strconv.Itoa(b.Passes[0].Summary.States["done"]), "run/failed": strconv.Itoa(b.Passes[0].Summary.States["failed"]),
		"run/copied": strconv.FormatInt(b.Passes[0].Summary.Totals.Copied, 10), "delta/pending": strconv.Itoa(b.Passes[1].Summary.States["pending"])}
	for key, g := range got {
		if g != want.counts[key] {
			t.Errorf("/api/status %s = %s; database says %s", key, g, want.counts[key])
		}
	}
	if !b.Paused || len(b.Passes[0].Failed) != 1 || b.Passes[0].Failed[0].ID != want.failed.ID {
		t.Errorf("/api/status: paused %v, failed %+v; want paused and %s failed", b.Paused, b.Passes[0].Failed, want.failed.ID)
	}
}

// checkRiverUI: River's UI, mounted at /riverui/, renders the queued jobs.
func checkRiverUI(ctx context.Context, t *testing.T, url string) {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	err := chromedp.Do(tctx,
		chromedp.Navigate(url+"/riverui/jobs?state=available"),
		chromedp.WaitVisible(chromedp.Search(`//*[contains(text(), "mailferry_account")]`)))
	if err != nil {
		t.Errorf("river ui: no mailferry_account job shown: %v", err)
	}
}

func checkPNG(t *testing.T, png []byte) {
	t.Helper()
	if len(png) < 8 || string(png[1:4]) != "PNG" {
		t.Fatalf("screenshot: %d bytes, not a PNG", len(png))
	}
}

// writeScreenshot rewrites docs/batch-status.png when asked.
func writeScreenshot(t *testing.T, png []byte) {
	t.Helper()
	checkPNG(t, png)
	if !*updateScreenshot && os.Getenv("MAILFERRY_UPDATE_SCREENSHOT") != "1" {
		return
	}
	if err := os.WriteFile(screenshotPath, png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// runningTruth is what the database says of batch staff at one moment.
type runningTruth struct {
	accounts, done, pending, running int
	copied                           int64
}

func readRunningTruth(t *testing.T, db string) runningTruth {
	t.Helper()
	s, err := batch.Open(t.Context(), batch.Config{URL: "sqlite:" + db})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	lines, err := s.Report(t.Context(), "staff", "")
	if err != nil {
		t.Fatal(err)
	}
	sum := batch.Summarize(lines)
	running := len(sqliteColumn(t, db, `SELECT id FROM river_job WHERE state = 'running'`))
	return runningTruth{accounts: sum.Accounts, done: sum.States[batch.StateDone], pending: sum.States[batch.StatePending], running: running, copied: sum.Totals.Copied}
}

// TestBatchServeDuringRun: the status page, loaded in headless Chromium
// while 'batch run' copies 6 throttled accounts 2 at a time, shows the
// batch unfinished with accounts running, and counts between what the
// database said just before and just after the page was read (the batch
// moves meanwhile: done and copied only grow). Its screenshot is
// docs/batch-status.png (-update-screenshot).
func TestBatchServeDuringRun(t *testing.T) {
	chromium := needChromium(t)
	d := mailtest.NeedDovecot(t)
	accts := newBatchAccounts(t, d, 6)
	for _, a := range accts {
		seedMore(t, d, a, "INBOX", 20, 3000)
		viaProxy(t, d, a, scenarioRate)
	}
	dir := t.TempDir()
	env := map[string]string{"HOME": dir}
	csv := writeBatchCSV(t, dir, accts, env)
	db := filepath.Join(dir, "staff.batch.db")
	type result struct {
		code           int
		stdout, stderr string
	}
	ran := make(chan result, 1)
	go func() {
		code, stdout, stderr := runCLI(t, env, "batch", "run", csv, "--workers", "2", "--ca-file", d.CAFile)
		ran <- result{code, stdout, stderr}
	}()
	// Asked with plain SQL until batch run has made its tables (opening the
	// store would race its migrations).
	waitUntil(t, 2*time.Minute, "an account done and another running", func() bool {
		c, err := sql.Open("sqlite", "file:"+db+"?mode=ro")
		if err != nil {
			return false
		}
		defer c.Close()
		var done, running int
		err = c.QueryRow(`SELECT COUNT(*) FILTER (WHERE state = 'completed'), COUNT(*) FILTER (WHERE state = 'running') FROM river_job`).Scan(&done, &running)
		return err == nil && done >= 1 && running >= 1
	})
	h, closeFn, err := newBatchStatusHandler(t.Context(), &batchServeOptions{db: db, dbEnv: "MAILFERRY_DB"}, &cliEnv{stdin: strings.NewReader(""), stdout: io.Discard, stderr: io.Discard, getenv: func(k string) string { return env[k] }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(closeFn)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	ctx := newChromium(t, chromium)
	// The first action starts the browser and binds it to its context
	// (no timeout there, chromedp's rule): before the timed reads.
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("chromium: %v", err)
	}
	before := readRunningTruth(t, db)
	page, png := readRunningPage(ctx, t, srv.URL)
	after := readRunningTruth(t, db)
	t.Logf("database before %+v, page %v, database after %+v", before, page, after)
	between := func(key string, lo, hi int64) {
		n, err := strconv.ParseInt(page[key], 10, 64)
		if err != nil || n < lo || n > hi {
			t.Errorf("page %s = %q; the database said %d before and %d after", key, page[key], lo, hi)
		}
	}
	between("accounts", 6, 6)
	between("done", int64(before.done), int64(after.done))
	between("copied", before.copied, after.copied)
	between("pending", int64(after.pending), int64(before.pending))
	between("running", 1, 2) // a batch still running, 2 at a time at most
	writeScreenshot(t, png)
	r := <-ran
	if r.code != exitcode.OK || !strings.Contains(r.stdout, "6 accounts: 6 done") {
		t.Errorf("batch run = %d, stdout %q, stderr %q; want 0, all done", r.code, r.stdout, r.stderr)
	}
	for _, a := range accts {
		checkCopied(t, d, a)
	}
}

// readRunningPage reads the batch's counts off the page and screenshots it.
func readRunningPage(ctx context.Context, t *testing.T, url string) (map[string]string, []byte) {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := chromedp.Do(tctx, chromedp.Navigate(url+"/")); err != nil {
		t.Fatalf("chromium: %v", err)
	}
	got := map[string]string{}
	for _, key := range []string{"accounts", "done", "pending", "running", "copied"} {
		sel := `section[data-batch="staff"] table.accounts td[data-count="` + key + `"]`
		text, err := chromedp.Run(tctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("chromium: %s (%s): %v", key, sel, err)
		}
		got[key] = strings.TrimSpace(text)
	}
	png, err := chromedp.Run(tctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("chromium screenshot: %v", err)
	}
	return got, png
}
