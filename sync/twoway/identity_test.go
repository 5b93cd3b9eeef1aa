package twoway

import (
	"context"
	"testing"

	"github.com/mailferry/mailferry/sync/mail"
)

// statusStore is a memStore whose INBOX has a UIDVALIDITY, as an IMAP
// account's has.
type statusStore struct {
	*memStore
	validity uint32
}

func (s *statusStore) FolderStatuses(ctx context.Context, mailboxes []string) (map[string]mail.FolderStatus, error) {
	return map[string]mail.FolderStatus{"INBOX": {UIDValidity: s.validity}}, nil
}

// TestIdentityUIDValidity: an IMAP side's identity holds its INBOX
// UIDVALIDITY; when it changes (the account was recreated) absence from
// that side is not a deletion; a state written before identities held it
// still matches.
func TestIdentityUIDValidity(t *testing.T) {
	for _, tc := range []struct {
		name     string
		recorded string // side A's identity in the state before the second sync ("": as the first wrote it)
		validity uint32 // side A's UIDVALIDITY at the second sync
		deleted  bool   // whether token 2, gone from A, is deleted on B
	}{
		{"same account", "", 7, true},
		{"account recreated", "", 8, false},
		{"state written before the UIDVALIDITY", "mem:a", 7, true},
		{"another account", "mem:other", 7, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := &statusStore{newMemStore("a", "INBOX"), 7}, newMemStore("b", "INBOX")
			a.add("INBOX", 1)
			a.add("INBOX", 2)
			dir := t.TempDir()
			stores := func() [2]*Store {
				return [2]*Store{{Source: a, Sink: a, Identity: "mem:a"}, {Source: b, Sink: b, Identity: "mem:b"}}
			}
			st := openState(t, dir, false)
			if _, err := Run(context.Background(), stores(), st, RunOptions{}); err != nil {
				t.Fatal(err)
			}
			if ida, _ := st.Identities(); ida != "mem:a uidvalidity=7" {
				t.Fatalf("recorded identity %q", ida)
			}
			if tc.recorded != "" {
				if err := st.SetIdentities(tc.recorded, "mem:b"); err != nil {
					t.Fatal(err)
				}
			}
			st.Close()
			a.removeTok("INBOX", 2)
			a.validity = tc.validity
			st = openState(t, dir, false)
			defer st.Close()
			res, err := Run(context.Background(), stores(), st, RunOptions{})
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]string{"INBOX": "1:,2:"} // merged: copied back to A
			if tc.deleted {
				want = map[string]string{"INBOX": "1:"}
			}
			checkStores(t, "second sync", a.memStore, b, want)
			if tc.deleted != (res.Side[B].Deleted == 1) {
				t.Fatalf("counts %+v", res.Side)
			}
			if ida, _ := st.Identities(); ida != "mem:a uidvalidity="+map[uint32]string{7: "7", 8: "8"}[tc.validity] {
				t.Fatalf("identity after the second sync %q", ida)
			}
		})
	}
}
