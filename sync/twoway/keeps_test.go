package twoway

import (
	"context"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/mailferry/mailferry/sync/mail"
)

// systemOnly is a memStore that, as an IMAP server without `\*` in its
// PERMANENTFLAGS, keeps no keyword: what it is given loses them.
type systemOnly struct{ *memStore }

func (s systemOnly) Put(ctx context.Context, env mail.Envelope, body io.Reader) (mail.ID, error) {
	env.Flags = dropKeywords(env.Flags)
	return s.memStore.Put(ctx, env, body)
}

func (s systemOnly) SetFlags(ctx context.Context, mailbox string, id mail.ID, flags []mail.Flag) error {
	return s.memStore.SetFlags(ctx, mailbox, id, dropKeywords(flags))
}

func dropKeywords(flags []mail.Flag) []mail.Flag {
	var out []mail.Flag
	for _, f := range flags {
		if strings.HasPrefix(string(f), `\`) {
			out = append(out, f)
		}
	}
	return out
}

// saysPermanentFlags is systemOnly that says so (mail.FlagKeeper).
type saysPermanentFlags struct{ systemOnly }

func (s saysPermanentFlags) KeptFlags(ctx context.Context, mailbox string) ([]mail.Flag, bool, error) {
	return []mail.Flag{mail.FlagSeen, mail.FlagAnswered, mail.FlagFlagged, mail.FlagDeleted, mail.FlagDraft}, false, nil
}

// TestKeepsFromPermanentFlags: side B keeps no keywords. A keyword on A
// that B could not store is not read as removed on B: it stays on A, and
// the next sync writes nothing. The negative control is the same side
// without its PERMANENTFLAGS known: the keyword is removed from A.
func TestKeepsFromPermanentFlags(t *testing.T) {
	for _, tc := range []struct {
		name string
		sink func(*memStore) mail.Sink
		want string // A's INBOX after the second sync
	}{
		{"PERMANENTFLAGS known", func(m *memStore) mail.Sink { return saysPermanentFlags{systemOnly{m}} }, `1:$Work \Seen`},
		{"not known (negative control)", func(m *memStore) mail.Sink { return systemOnly{m} }, `1:\Seen`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := newMemStore("a", "INBOX"), newMemStore("b", "INBOX")
			a.add("INBOX", 1, mail.FlagSeen, "$Work")
			dir := t.TempDir()
			sync := func() *Result {
				st := openState(t, dir, false)
				defer st.Close()
				res, err := Run(context.Background(), [2]*Store{{Source: a, Sink: a, Identity: "mem:a"}, {Source: b, Sink: tc.sink(b), Identity: "mem:b"}}, st, RunOptions{})
				if err != nil {
					t.Fatal(err)
				}
				return res
			}
			sync()
			if got := b.describe()["INBOX"]; got != `1:\Seen` {
				t.Fatalf("B holds %s", got)
			}
			sync()
			if got := a.describe()["INBOX"]; got != tc.want {
				t.Fatalf("A holds %s, want %s", got, tc.want)
			}
			if res := sync(); res.Side != [2]Counts{} {
				t.Fatalf("a third sync did %+v", res.Side)
			}
		})
	}
}

func TestKeepsOf(t *testing.T) {
	withStar := keepsOf([]mail.Flag{mail.FlagSeen, `\*`}, false)
	without := keepsOf([]mail.Flag{mail.FlagSeen, "$Label1"}, false)
	for _, tc := range []struct {
		k    Keeps
		f    mail.Flag
		want bool
	}{
		{keepsOf(nil, true), "$Any", true},
		{withStar, "$Any", true},
		{withStar, mail.FlagSeen, true},
		{withStar, mail.FlagFlagged, false}, // `\*` is keywords only
		{without, "$Label1", true},
		{without, "$Any", false},
		{without, mail.FlagDraft, false},
	} {
		if got := tc.k.Has(tc.f); got != tc.want {
			t.Errorf("%v.Has(%s) = %v, want %v", tc.k, tc.f, got, tc.want)
		}
	}
}

// keywordsPerFolder is a memStore that, as an IMAP server whose folder
// full lacks `\*` in its PERMANENTFLAGS while the others have it, keeps no
// keyword in full only, and says so per folder (mail.FlagKeeper).
type keywordsPerFolder struct {
	*memStore
	full string
}

func (s keywordsPerFolder) Put(ctx context.Context, env mail.Envelope, body io.Reader) (mail.ID, error) {
	if env.Mailbox == s.full {
		env.Flags = dropKeywords(env.Flags)
	}
	return s.memStore.Put(ctx, env, body)
}

func (s keywordsPerFolder) SetFlags(ctx context.Context, mailbox string, id mail.ID, flags []mail.Flag) error {
	if mailbox == s.full {
		flags = dropKeywords(flags)
	}
	return s.memStore.SetFlags(ctx, mailbox, id, flags)
}

func (s keywordsPerFolder) KeptFlags(ctx context.Context, mailbox string) ([]mail.Flag, bool, error) {
	flags := []mail.Flag{mail.FlagSeen, mail.FlagAnswered, mail.FlagFlagged, mail.FlagDeleted, mail.FlagDraft}
	if mailbox != s.full {
		flags = append(flags, `\*`)
	}
	return flags, false, nil
}

// TestKeepsPerFolder: side B keeps keywords in INBOX but not in Full (its
// PERMANENTFLAGS differ per folder). The keyword of A's message in Full,
// which B could not store, is not read as removed on B; a keyword removed
// on B in INBOX, where B keeps keywords, is removed on A (the control: the
// folders are not all treated as keeping nothing). With the side's keeps
// read from INBOX for every folder, A's message in Full lost its keyword.
func TestKeepsPerFolder(t *testing.T) {
	a, b := newMemStore("a", "INBOX", "Full"), newMemStore("b", "INBOX", "Full")
	a.add("INBOX", 1, mail.FlagSeen, "$Work")
	a.add("Full", 2, mail.FlagSeen, "$Work")
	dir := t.TempDir()
	sync := func() *Result {
		t.Helper()
		st := openState(t, dir, false)
		defer st.Close()
		res, err := Run(context.Background(), [2]*Store{{Source: a, Sink: a, Identity: "mem:a"},
			{Source: b, Sink: keywordsPerFolder{b, "Full"}, Identity: "mem:b"}}, st, RunOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	sync()
	if got := b.describe(); got["INBOX"] != `1:$Work \Seen` || got["Full"] != `2:\Seen` {
		t.Fatalf("B holds %v after the first sync", got)
	}
	b.setFlagsOf("INBOX", 1, mail.FlagSeen)
	sync()
	if got, want := a.describe(), map[string]string{"INBOX": `1:\Seen`, "Full": `2:$Work \Seen`}; !reflect.DeepEqual(got, want) {
		t.Fatalf("A holds %v, want %v", got, want)
	}
	if res := sync(); res.Side != [2]Counts{} {
		t.Fatalf("a third sync did %+v", res.Side)
	}
}
