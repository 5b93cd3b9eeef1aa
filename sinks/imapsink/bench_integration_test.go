package imapsink

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mailferry/mailferry/sources/imap"
	mailferry "github.com/mailferry/mailferry/sync"
	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

// setAppendConns gives a fresh sink n append connections (Limits stay as
// they are: more Puts than connections share them).
func (s *Sink) setAppendConns(n int) {
	s.slots = nil
	for range n {
		s.slots = append(s.slots, &slot{lock: make(chan struct{}, 1)})
	}
	s.avail = make(chan struct{}, n)
}

// TestBenchIMAPToIMAP times whole-account copies between Dovecot users:
// MULTIAPPEND with 1, 2 and 4 append connections, one APPEND per message
// with 4, and Dovecot's own dsync (doveadm backup over imapc) as the peer.
// Set MAILFERRY_BENCH=N (messages, e.g. 3000) to run it.
func TestBenchIMAPToIMAP(t *testing.T) {
	total, _ := strconv.Atoi(os.Getenv("MAILFERRY_BENCH"))
	if total <= 0 {
		t.Skip("set MAILFERRY_BENCH=3000 to run the benchmark")
	}
	d := mailtest.NeedDovecot(t)
	srcCfg, srcO := dovecotAccount(t, d)
	home := filepath.Join(d.Dir, "home", srcCfg.User)
	gen := exec.Command("python3", filepath.Join(mailtest.Testdata(t), "..", "..", "shared", "bench", "gencorpus.py"), filepath.Join(home, "Maildir"), strconv.Itoa(total))
	if p := os.Getenv("MAILFERRY_BENCH_GEN"); p != "" {
		gen.Args[1] = p
	}
	if out, err := gen.CombinedOutput(); err != nil {
		t.Fatalf("gencorpus: %v\n%s", err, out)
	}
	if out, err := exec.Command("chown", "-R", "vmail:vmail", home).CombinedOutput(); err != nil {
		t.Fatalf("chown: %v\n%s", err, out)
	}
	rounds, _ := strconv.Atoi(os.Getenv("MAILFERRY_BENCH_ROUNDS"))
	if rounds <= 0 {
		rounds = 3
	}
	ctx := context.Background()
	variants := []struct {
		name  string
		multi bool
		conns int
	}{
		{"multiappend-1", true, 1}, {"multiappend-2", true, 2}, {"multiappend-4", true, 4},
		{"append-4", false, 4}, {"dsync", false, 0},
	}
	run := func(name string, multi bool, conns int) (time.Duration, int64) {
		dstCfg, dstO := dovecotAccount(t, d)
		if name == "dsync" {
			pw, _ := srcO.Password(ctx)
			_, port, _ := strings.Cut(os.Getenv(mailtest.EnvIMAPStartTLS), "localhost:")
			start := time.Now()
			cmd := exec.Command("doveadm", "-c", filepath.Join(d.Dir, "dovecot.conf"), "-o", "imapc_host=127.0.0.1", "-o", "imapc_port="+port,
				"-o", "imapc_user="+srcCfg.User, "-o", "imapc_password="+pw, "-o", "imapc_features=rfc822.size fetch-headers",
				"-o", "mail_prefetch_count=20", "backup", "-R", "-u", dstCfg.User, "imapc:")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("dsync: %v\n%s", err, out)
			}
			return time.Since(start), 0
		}
		dstCfg.MultiAppend = multi
		start := time.Now()
		src, err := imap.New(ctx, &srcCfg.Config, srcO)
		if err != nil {
			t.Fatal(err)
		}
		dst, err := New(ctx, dstCfg, dstO)
		if err != nil {
			t.Fatal(err)
		}
		dst.setAppendConns(conns)
		res, err := mailferry.Copy(ctx, src, dst, mailferry.Options{})
		src.Close()
		dst.Close()
		if err != nil || len(res.Failures) > 0 {
			t.Fatalf("%s: Copy = %v, failures %v", name, err, res.Failures)
		}
		return time.Since(start), res.Stats.Copied.Load()
	}
	// Warm-up: Dovecot builds the source's indexes on first access.
	if _, n := run("warm-up", true, 2); n < int64(total)*9/10 {
		t.Fatalf("warm-up copied %d messages, want about %d", n, total)
	}
	times := map[string][]time.Duration{}
	for r := 0; r < rounds; r++ {
		for _, v := range variants {
			dt, _ := run(v.name, v.multi, v.conns)
			times[v.name] = append(times[v.name], dt)
		}
	}
	median := func(ds []time.Duration) time.Duration {
		s := append([]time.Duration(nil), ds...)
		sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
		return s[len(s)/2]
	}
	ref := median(times["dsync"])
	var b strings.Builder
	fmt.Fprintf(&b, "%d messages, %d rounds, medians:\n", total, rounds)
	for _, v := range variants {
		m := median(times[v.name])
		fmt.Fprintf(&b, "  %-14s %8.2fs  x%.2f dsync  %v\n", v.name, m.Seconds(), m.Seconds()/ref.Seconds(), times[v.name])
	}
	t.Log(b.String())
}
