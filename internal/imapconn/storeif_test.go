package imapconn

import (
	"reflect"
	"strings"
	"testing"
)

// parseStore runs the lines of a conditional store's answer (untagged
// responses, then the tagged one) through the session's parsers and
// storeResult.
func parseStore(uid uint32, lines []string) (StoreResult, error) {
	var fds []FetchData
	var tagged Response
	for _, l := range lines {
		tag, u, err := parseResponse([]byte(l))
		if err != nil {
			return StoreResult{}, err
		}
		if tag != "*" {
			tagged = u.Status
			continue
		}
		if err := fetchEach(func(fd FetchData) error { fds = append(fds, fd); return nil })(u); err != nil {
			return StoreResult{}, err
		}
	}
	return storeResult(uid, tagged, fds)
}

func TestStoreResult(t *testing.T) {
	for _, tc := range []struct {
		name  string
		lines []string
		want  StoreResult
		err   bool
	}{
		{"stored", []string{
			`* 3 FETCH (UID 7 MODSEQ (12))`,
			`* 3 FETCH (UID 7 FLAGS (\Seen $Work) MODSEQ (12))`,
			`D1 OK Conditional Store completed`,
		}, StoreResult{Found: true, Stored: true, Flags: []string{`\Seen`, `$Work`}, ModSeq: 12}, false},
		{"modified under us", []string{
			`* 3 FETCH (UID 7 FLAGS (\Flagged) MODSEQ (15))`,
			`D1 OK [MODIFIED 7] Conditional STORE failed`,
		}, StoreResult{Found: true, Stored: false, Flags: []string{`\Flagged`}, ModSeq: 15}, false},
		{"modified, a set", []string{
			`* 3 FETCH (UID 7 FLAGS () MODSEQ (15))`,
			`D1 OK [MODIFIED 2:9] done`,
		}, StoreResult{Found: true, Stored: false, Flags: []string{}, ModSeq: 15}, false},
		{"modified, lower case code", []string{
			`* 3 FETCH (UID 7 FLAGS () MODSEQ (15))`,
			`D1 OK [modified 7] done`,
		}, StoreResult{Found: true, Stored: false, Flags: []string{}, ModSeq: 15}, false},
		{"expunged meanwhile", []string{`D1 OK done`}, StoreResult{}, false},
		{"another message's FETCH only", []string{
			`* 4 FETCH (UID 8 FLAGS () MODSEQ (15))`,
			`D1 OK done`,
		}, StoreResult{}, false},
		{"MODIFIED naming other messages", []string{
			`* 3 FETCH (UID 7 FLAGS () MODSEQ (15))`,
			`D1 OK [MODIFIED 9] done`,
		}, StoreResult{}, true},
		{"bad MODIFIED set", []string{`D1 OK [MODIFIED 0] done`}, StoreResult{}, true},
		{"read-back without MODSEQ", []string{
			`* 3 FETCH (UID 7 FLAGS (\Seen))`,
			`D1 OK done`,
		}, StoreResult{}, true},
		{"bad MODSEQ", []string{`* 3 FETCH (UID 7 FLAGS () MODSEQ (x))`, `D1 OK done`}, StoreResult{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseStore(7, tc.lines)
			if (err != nil) != tc.err {
				t.Fatalf("storeResult = %+v, %v; want error %v", got, err, tc.err)
			}
			if !tc.err && !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("storeResult = %+v, want %+v", got, tc.want)
			}
		})
	}
}

// FuzzStoreResult: whatever the server answers, storeResult neither
// panics nor reports a store of a message it did not find, nor a found
// message without a mod-sequence.
func FuzzStoreResult(f *testing.F) {
	f.Add("* 3 FETCH (UID 7 FLAGS (\\Seen) MODSEQ (12))\nD1 OK done")
	f.Add("* 3 FETCH (UID 7 FLAGS () MODSEQ (15))\nD1 OK [MODIFIED 7] failed")
	f.Add("D1 OK [MODIFIED 1:4294967295] x")
	f.Fuzz(func(t *testing.T, answer string) {
		res, err := parseStore(7, strings.Split(answer, "\n"))
		if err != nil {
			return
		}
		if res.Stored && !res.Found || res.Found && res.ModSeq == 0 {
			t.Fatalf("storeResult(%q) = %+v", answer, res)
		}
	})
}
