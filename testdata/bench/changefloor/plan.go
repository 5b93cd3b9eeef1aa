package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// The untimed pre-pass: what changed on each side (mailchange.py --record), where each changed
// message is on the other side (Message-ID -> folder and UID, or -> file), and from that the
// plan: every command and file operation the timed part does.

// record is what mailchange.py --record wrote for one side.
type record struct {
	Folders map[string]struct {
		UIDValidity uint64 `json:"uidvalidity"`
		ModSeq      uint64 `json:"modseq"`
	} `json:"folders"`
	Flag   []change `json:"flag"`
	Delete []change `json:"delete"`
	New    []change `json:"new"`
}

type change struct {
	Folder  string `json:"folder"` // IMAP
	UID     uint32 `json:"uid"`    // IMAP
	File    string `json:"file"`   // Maildir: the file's path after the change
	MID     string `json:"mid"`
	Flagged bool   `json:"flagged"` // \Flagged after a flag change
}

// plan is everything the timed part does.
type plan struct {
	Addr    string
	CAFile  string
	IMAP    []*imapSide // one (IMAP <-> Maildir) or two (IMAP <-> IMAP)
	Maildir *maildirSide
}

type imapSide struct {
	User         string
	PasswordFile string
	Folders      []*folder // SELECTed in this order (QRESYNC): each folder changed on either side
	AppendTo     string    // where the other side's new messages go
	AppendFiles  []string  // IMAP <-> Maildir: the Maildir's new files
	AppendFrom   int       // IMAP <-> IMAP: how many bodies the other side fetches for this one
	LearnFlags   int       // its own flag changes, which its SELECTs must report
	LearnGone    int       // its own deletions, which its SELECTs must report as VANISHED
}

type folder struct {
	Name        string // as LIST gave it
	UIDValidity uint64
	ModSeq      uint64 // before the changes: what the last sync saw
	Fetch       []uint32
	FlagOn      []uint32
	FlagOff     []uint32
	Delete      []uint32
}

type maildirSide struct {
	Readdir []string    // folder directories changed here: their cur/ and new/ are read
	Renames [][2]string // the other side's flag changes
	Unlinks []string    // the other side's deletions
	NewDir  string      // the folder the other side's new messages go to
	NewN    int         // how many
	Fsync   []string    // directories whose entries changed
}

type planOpts struct {
	addr, caFile     string
	users, pwFiles   [2]string // users[1] empty: IMAP <-> Maildir
	records          [2]string
	maildir, mdInbox string
	out              string
}

type loc struct {
	folder string
	uid    uint32
}

func runPlan(o planOpts) error {
	var recs [2]record
	for i, f := range o.records {
		if err := readJSON(f, &recs[i]); err != nil {
			return err
		}
	}
	p := &plan{Addr: o.addr, CAFile: o.caFile}
	gone := [2]map[string]bool{mids(recs[0].Delete), mids(recs[1].Delete)}
	flagged := [2]map[string]bool{mids(recs[0].Flag), mids(recs[1].Flag)}
	// skip says whether the other side's change to mid needs no write on side s: mid deleted on
	// either side (a deletion wins over a flag change), or its flag toggled on both (both from
	// the same state: they agree).
	skipFlag := func(s int, mid string) bool { return gone[0][mid] || gone[1][mid] || flagged[s][mid] }
	nSides := 1
	if o.users[1] != "" {
		nSides = 2
	}
	for s := 0; s < nSides; s++ {
		idx, err := imapIndex(o.addr, o.caFile, o.users[s], o.pwFiles[s], &recs[s])
		if err != nil {
			return fmt.Errorf("%s: %w", o.users[s], err)
		}
		side, err := planIMAP(o.users[s], o.pwFiles[s], &recs[s], &recs[1-s], idx, gone[s], func(mid string) bool { return skipFlag(s, mid) })
		if err != nil {
			return fmt.Errorf("%s: %w", o.users[s], err)
		}
		if nSides == 2 {
			side.AppendFrom = len(recs[1-s].New)
		} else {
			for _, c := range recs[1].New {
				side.AppendFiles = append(side.AppendFiles, c.File)
			}
		}
		p.IMAP = append(p.IMAP, side)
	}
	if nSides == 1 {
		md, err := planMaildir(o.maildir, o.mdInbox, &recs[1], &recs[0], gone[1], func(mid string) bool { return skipFlag(1, mid) })
		if err != nil {
			return fmt.Errorf("maildir: %w", err)
		}
		p.Maildir = md
	}
	b, err := json.MarshalIndent(p, "", " ")
	if err != nil {
		return err
	}
	return os.WriteFile(o.out, b, 0o600)
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

func mids(cs []change) map[string]bool {
	m := make(map[string]bool, len(cs))
	for _, c := range cs {
		m[c.MID] = true
	}
	return m
}

// planIMAP plans IMAP side own (its changes in rec) for the other side's changes (other):
// idx says where each message is here, goneHere what was deleted here already.
func planIMAP(user, pwFile string, own, other *record, idx map[string]loc, goneHere map[string]bool,
	skipFlag func(string) bool) (*imapSide, error) {
	side := &imapSide{User: user, PasswordFile: pwFile, AppendTo: "INBOX"}
	byName := map[string]*folder{}
	get := func(name string) (*folder, error) {
		if f := byName[name]; f != nil {
			return f, nil
		}
		st, ok := own.Folders[name]
		if !ok {
			return nil, fmt.Errorf("folder %s: no status in the record", name)
		}
		f := &folder{Name: name, UIDValidity: st.UIDValidity, ModSeq: st.ModSeq}
		byName[name] = f
		return f, nil
	}
	if _, err := get("INBOX"); err != nil { // the new messages' folder, on both sides
		return nil, err
	}
	for _, c := range own.Flag {
		if _, err := get(c.Folder); err != nil {
			return nil, err
		}
		side.LearnFlags++
	}
	for _, c := range own.Delete {
		if _, err := get(c.Folder); err != nil {
			return nil, err
		}
		side.LearnGone++
	}
	for _, c := range own.New {
		f, err := get(c.Folder)
		if err != nil {
			return nil, err
		}
		f.Fetch = append(f.Fetch, c.UID)
	}
	for _, c := range other.Flag {
		if skipFlag(c.MID) {
			continue
		}
		l, ok := idx[c.MID]
		if !ok {
			return nil, fmt.Errorf("flag change of %s: not on this side", c.MID)
		}
		f, err := get(l.folder)
		if err != nil {
			return nil, err
		}
		if c.Flagged {
			f.FlagOn = append(f.FlagOn, l.uid)
		} else {
			f.FlagOff = append(f.FlagOff, l.uid)
		}
	}
	for _, c := range other.Delete {
		if goneHere[c.MID] {
			continue
		}
		l, ok := idx[c.MID]
		if !ok {
			return nil, fmt.Errorf("deletion of %s: not on this side", c.MID)
		}
		f, err := get(l.folder)
		if err != nil {
			return nil, err
		}
		f.Delete = append(f.Delete, l.uid)
	}
	for _, f := range byName {
		for _, u := range [][]uint32{f.Fetch, f.FlagOn, f.FlagOff, f.Delete} {
			sort.Slice(u, func(i, j int) bool { return u[i] < u[j] })
		}
		side.Folders = append(side.Folders, f)
	}
	// INBOX first: its new bodies are what the other side waits for.
	sort.Slice(side.Folders, func(i, j int) bool {
		a, b := side.Folders[i].Name, side.Folders[j].Name
		if (a == "INBOX") != (b == "INBOX") {
			return a == "INBOX"
		}
		return a < b
	})
	return side, nil
}

var (
	uidRe = regexp.MustCompile(`UID (\d+)`)
	midRe = regexp.MustCompile(`(?im)^message-id:[ \t]*(<[^>\r\n]*>)`)
)

// imapIndex maps every Message-ID of the account's folders (those in rec) to its folder and
// UID, over a connection of its own.
func imapIndex(addr, caFile, user, pwFile string, rec *record) (map[string]loc, error) {
	c, err := dial(addr, caFile)
	if err != nil {
		return nil, err
	}
	defer func() { _ = c.conn.Close() }()
	if err := c.login(user, pwFile); err != nil {
		return nil, err
	}
	idx := map[string]loc{}
	for name := range rec.Folders {
		if err := c.do("EXAMINE "+mailbox(name), nil); err != nil {
			return nil, err
		}
		err := c.do("UID FETCH 1:* (UID BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])", func(rs response) {
			u := uidRe.FindStringSubmatch(rs.text)
			if u == nil || len(rs.lits) == 0 {
				return
			}
			if m := midRe.FindSubmatch(rs.lits[0]); m != nil {
				uid, _ := strconv.ParseUint(u[1], 10, 32)
				idx[string(m[1])] = loc{name, uint32(uid)}
			}
		})
		if err != nil {
			return nil, err
		}
	}
	_ = c.do("LOGOUT", nil)
	return idx, nil
}

// maildirIndex maps every Message-ID under root to its file.
func maildirIndex(root string) (map[string]string, error) {
	idx := map[string]string{}
	buf := make([]byte, 16<<10)
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if dir := filepath.Base(filepath.Dir(p)); dir != "cur" && dir != "new" {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		n, err := io.ReadFull(f, buf)
		_ = f.Close()
		if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
			return err
		}
		head := buf[:n]
		if i := strings.Index(string(head), "\n\n"); i >= 0 {
			head = head[:i]
		}
		if i := strings.Index(string(head), "\r\n\r\n"); i >= 0 {
			head = head[:i]
		}
		if m := midRe.FindSubmatch(head); m != nil {
			idx[string(m[1])] = p
		}
		return nil
	})
	return idx, err
}

// planMaildir plans the Maildir side (its changes in own) for the IMAP side's changes.
func planMaildir(root, inbox string, own, other *record, goneHere map[string]bool, skipFlag func(string) bool) (*maildirSide, error) {
	idx, err := maildirIndex(root)
	if err != nil {
		return nil, err
	}
	md := &maildirSide{NewDir: inbox, NewN: len(other.New)}
	seen := map[string]bool{}
	add := func(list *[]string, p string) {
		if !seen[p] {
			seen[p] = true
			*list = append(*list, p)
		}
	}
	for _, cs := range [][]change{own.Flag, own.Delete, own.New} {
		for _, c := range cs {
			add(&md.Readdir, filepath.Dir(filepath.Dir(c.File)))
		}
	}
	clear(seen)
	for _, c := range other.Flag {
		if skipFlag(c.MID) {
			continue
		}
		p, ok := idx[c.MID]
		if !ok {
			return nil, fmt.Errorf("flag change of %s: no file", c.MID)
		}
		if hasFlagged(p) == c.Flagged {
			continue
		}
		to := withFlagged(p, c.Flagged)
		md.Renames = append(md.Renames, [2]string{p, to})
		add(&md.Fsync, filepath.Dir(p))
		add(&md.Fsync, filepath.Dir(to))
	}
	for _, c := range other.Delete {
		if goneHere[c.MID] {
			continue
		}
		p, ok := idx[c.MID]
		if !ok {
			return nil, fmt.Errorf("deletion of %s: no file", c.MID)
		}
		md.Unlinks = append(md.Unlinks, p)
		add(&md.Fsync, filepath.Dir(p))
	}
	if md.NewN > 0 {
		add(&md.Fsync, filepath.Join(inbox, "new"))
	}
	return md, nil
}

func hasFlagged(p string) bool {
	_, flags, _ := strings.Cut(filepath.Base(p), ":2,")
	return strings.Contains(flags, "F")
}

// withFlagged is p's name in cur/ with F set or cleared in its info part.
func withFlagged(p string, on bool) string {
	dir, name := filepath.Split(p)
	base, flags, _ := strings.Cut(name, ":2,")
	flags = strings.ReplaceAll(flags, "F", "")
	if on {
		b := []byte(flags + "F")
		sort.Slice(b, func(i, j int) bool { return b[i] < b[j] })
		flags = string(b)
	}
	return filepath.Join(filepath.Dir(filepath.Clean(dir)), "cur", base+":2,"+flags)
}
