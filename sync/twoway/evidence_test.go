package twoway

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/mailferry/mailferry/sync/state"
)

func TestFileEdited(t *testing.T) {
	ev := withEvidence("", B, sideEvidence{stamp: 0x51})
	racyEv := withEvidence("a=7", B, sideEvidence{stamp: 0x51, content: "c1"})
	if se, ok := evidenceOf(racyEv, B); !ok || se.stamp != 0x51 || se.content != "c1" {
		t.Fatalf("evidenceOf(%q) = %+v, %v", racyEv, se, ok)
	}
	if se, ok := evidenceOf(racyEv, A); !ok || se.stamp != 7 {
		t.Fatalf("evidenceOf(%q, A) = %+v, %v", racyEv, se, ok)
	}
	for _, tc := range []struct {
		name          string
		rec           state.Message
		m             Msg
		edited, stale bool
	}{
		{"not from a file: the size", state.Message{Size: 10, Evidence: ev}, Msg{Size: 11}, true, false},
		{"not from a file, same size", state.Message{Size: 10, Evidence: ev}, Msg{Size: 10}, false, false},
		{"no evidence yet: the size, then stamped", state.Message{Size: 10}, Msg{Size: 10, Stamp: 0x52}, false, true},
		{"no evidence yet, other size", state.Message{Size: 10}, Msg{Size: 11, Stamp: 0x52}, true, false},
		{"same stamp", state.Message{Size: 10, Evidence: ev}, Msg{Size: 10, Stamp: 0x51}, false, false},
		{"stamp moved (a write)", state.Message{Size: 10, Evidence: ev}, Msg{Size: 10, Stamp: 0x52}, true, false},
		{"racy record, same content, still racy", state.Message{Evidence: racyEv}, Msg{Stamp: 0x51, Racy: true, Content: "c1"}, false, false},
		{"racy record, same content, settled now", state.Message{Evidence: racyEv}, Msg{Stamp: 0x51, Content: "c1"}, false, true},
		{"racy record, other content (same tick)", state.Message{Evidence: racyEv}, Msg{Stamp: 0x51, Content: "c2"}, true, false},
		{"racy record, stamp moved, same content", state.Message{Evidence: racyEv}, Msg{Stamp: 0x52, Content: "c1"}, false, true},
		{"racy record, content unread", state.Message{Evidence: racyEv}, Msg{Stamp: 0x51}, false, false},
	} {
		edited, stale := fileEdited(tc.rec, B, &tc.m)
		if edited != tc.edited || stale != tc.stale {
			t.Errorf("%s: fileEdited = %v, %v; want %v, %v", tc.name, edited, stale, tc.edited, tc.stale)
		}
	}
}

// TestRunMaildirRecordsGetEvidence: records written before the evidence
// (or by settle after a kill) hold none: the next sync stamps them,
// changing nothing else, and a same-size edit after is seen (by the next
// full listing).
func TestRunMaildirRecordsGetEvidence(t *testing.T) {
	root, dir := filepath.Join(t.TempDir(), "Maildir"), t.TempDir()
	a := newMemStore("a", "INBOX")
	a.add("INBOX", 1)
	syncMaildir(t, a, root, dir, RunOptions{})
	evidence := func(drop bool) string {
		st := openState(t, filepath.Join(dir, "state"), false)
		defer st.Close()
		fo, err := st.Folder("INBOX")
		mustDo(t, err)
		msgs := fo.Messages()
		if len(msgs) != 1 {
			t.Fatalf("the state holds %d records", len(msgs))
		}
		if drop {
			m := msgs[0]
			m.Evidence = ""
			mustDo(t, fo.Put(m))
			mustDo(t, st.Flush())
		}
		return msgs[0].Evidence
	}
	if evidence(true) == "" {
		t.Fatal("the copy into the Maildir was recorded without evidence")
	}
	if res := syncMaildir(t, a, root, dir, RunOptions{FullEvery: 1}); res.Side != [2]Counts{} {
		t.Fatalf("the sync that stamps did %+v", res.Side)
	}
	if evidence(false) == "" {
		t.Fatal("the record was not stamped")
	}
	rewrite(false)(t, maildirFile(t, root, 1), time.Time{})
	// An edit in place that no deletion waits on is found by a full
	// listing (mdlisting.go).
	if res := syncMaildir(t, a, root, dir, RunOptions{FullEvery: 1}); res.Side[A].Copied != 1 {
		t.Fatalf("the edit after was not seen: %+v", res.Side)
	}
}
