package imapsink

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/mailferry/mailferry/sync/mail/mailtest"
)

// cyrusMunge does to a message what Cyrus IMAP does with munge8bit (its
// default): every 8-bit byte of the header becomes 'X'.
func cyrusMunge(b []byte) []byte {
	out := append([]byte(nil), b...)
	end := bytes.Index(out, []byte("\r\n\r\n"))
	if end < 0 {
		end = len(out)
	}
	for i := range out[:end] {
		if out[i] >= 0x80 {
			out[i] = 'X'
		}
	}
	return out
}

// courierCRLF does what Courier IMAP does: a message that does not end
// with a line break gets CRLF.
func courierCRLF(b []byte) []byte {
	if bytes.HasSuffix(b, []byte("\n")) {
		return b
	}
	return append(append([]byte(nil), b...), "\r\n"...)
}

// altered8bit, noFinalNL and both are messages those servers change.
var (
	altered8bit = msg("<8bit@x>", "Grüße aus Köln", "body\r\n")
	noFinalNL   = msg("<nonl@x>", "no final newline", "last line without an end")
	alteredBoth = msg("<both@x>", "Ünïcödé", "short, no end")
	unaltered   = msg("<plain@x>", "ascii", "fine\r\n")
)

// countWarn counts the records of a logger that hold text.
type countWarn struct {
	buf bytes.Buffer
}

func (c *countWarn) logger() *slog.Logger { return slog.New(slog.NewTextHandler(&c.buf, nil)) }

func (c *countWarn) count(text string) int { return strings.Count(c.buf.String(), text) }

const alteredWarning = "the server changed messages when it stored them"

// TestDedupeAlteredOnAppend: against a server that changes messages on
// APPEND as Cyrus or Courier do, a rerun without checkpoint recognises the
// changed copies, appends nothing, counts them and warns once.
func TestDedupeAlteredOnAppend(t *testing.T) {
	for _, tc := range []struct {
		name    string
		caps    string
		alter   func([]byte) []byte
		bodies  []string
		altered int64
		reason  string
	}{
		{"Cyrus munge8bit", capsPlain, cyrusMunge, []string{altered8bit, unaltered, altered8bit}, 2, "Cyrus"},
		{"Courier final CRLF", capsPlain, courierCRLF, []string{noFinalNL, unaltered}, 1, "Courier"},
		{"both MULTIAPPEND", capsMulti, func(b []byte) []byte { return courierCRLF(cyrusMunge(b)) },
			[]string{altered8bit, noFinalNL, alteredBoth, unaltered}, 3, "Cyrus"}, // the first change seen is named
		{"unaltered", capsMulti, nil, []string{altered8bit, noFinalNL, alteredBoth, unaltered}, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := startFake(t, tc.caps)
			changed := 0
			f.script(func(_ int, _ string, msgs []fakeMsg) fakeAction {
				for i := range msgs {
					if tc.alter != nil {
						if b := tc.alter(msgs[i].body); !bytes.Equal(b, msgs[i].body) {
							changed++
							msgs[i].body = b
						}
					}
				}
				return fakeAction{store: true}
			})
			s := f.sink(t)
			for _, b := range tc.bodies {
				put(t, s, "INBOX", b, testDate)
			}
			commit(t, s)
			if int64(changed) != tc.altered {
				t.Fatalf("the fake changed %d messages, want %d", changed, tc.altered)
			}
			appends, stored := f.appendCount(), len(f.messages("INBOX"))

			// A rerun without checkpoint: a fresh sink, the same messages.
			var log countWarn
			o := f.opts()
			o.Logger = log.logger()
			s2, err := New(context.Background(), f.config(), o)
			if err != nil {
				t.Fatal(err)
			}
			defer s2.Close()
			for _, b := range tc.bodies {
				put(t, s2, "INBOX", b, testDate)
			}
			commit(t, s2)
			if n := f.appendCount(); n != appends {
				t.Errorf("the rerun sent %d APPEND commands, want none", n-appends)
			}
			if n := len(f.messages("INBOX")); n != stored {
				t.Errorf("after the rerun INBOX holds %d messages, want %d", n, stored)
			}
			if n := s2.AlteredOnAppend(); n != tc.altered {
				t.Errorf("AlteredOnAppend() = %d, want %d", n, tc.altered)
			}
			want := 0
			if tc.altered > 0 {
				want = 1
			}
			if n := log.count(alteredWarning); n != want {
				t.Errorf("%d warnings about changed messages, want %d:\n%s", n, want, log.buf.String())
			}
			if tc.reason != "" && !strings.Contains(log.buf.String(), tc.reason) {
				t.Errorf("the warning does not say %q:\n%s", tc.reason, log.buf.String())
			}
		})
	}
}

// TestDedupeEightBitDovecot: Dovecot stores 8-bit headers and a message
// without a final line break as sent: a rerun appends nothing and reports
// no change.
func TestDedupeEightBitDovecot(t *testing.T) {
	d := mailtest.NeedDovecot(t)
	ctx := context.Background()
	cfg, o := dovecotAccount(t, d)
	bodies := []string{altered8bit, noFinalNL, alteredBoth, unaltered}
	for run := range 2 {
		s, err := New(ctx, cfg, o)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range bodies {
			put(t, s, "INBOX", b, testDate)
		}
		commit(t, s)
		if n := s.AlteredOnAppend(); n != 0 {
			t.Errorf("run %d: AlteredOnAppend() = %d, want 0 on Dovecot", run+1, n)
		}
		s.Close()
		pw, _ := o.Password(ctx)
		if n := len(d.Fetch(t, cfg.User, pw)["INBOX"]); n != len(bodies) {
			t.Errorf("after run %d INBOX holds %d messages, want %d", run+1, n, len(bodies))
		}
	}
}
