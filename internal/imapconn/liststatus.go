package imapconn

// The account's folders and their statuses on the raw session (issues 11
// and 12: one login per side and run). A run that lists changes needs the
// raw session anyway (QRESYNC, delta.go); asking NAMESPACE, LIST and the
// statuses there too spares the imapclient control connection, and its
// login, until work needs it. Names are decoded as imapclient decodes
// them (modified UTF-7, INBOX in capitals), so the IMAP source builds the
// same name table from either path.

import (
	"errors"
	"fmt"
	"strings"
)

// ListEntry is one LIST reply.
type ListEntry struct {
	Mailbox string // modified UTF-7 decoded; INBOX in capitals
	Delim   rune   // the hierarchy delimiter, 0 for a flat name (NIL)
	Attrs   []string
}

// Account is what Session.Account learnt about the account.
type Account struct {
	// Prefix and Delim are the first personal namespace (RFC 2342);
	// Namespace says the server answered one.
	Prefix    string
	Delim     rune
	Namespace bool
	// List is LIST "" "*"; nil when the server refused it.
	List []ListEntry
	// Statuses are those LIST-STATUS (RFC 5819) returned with the LIST, by
	// decoded mailbox name; nil when not asked or not offered.
	Statuses map[string]Status
}

// StatusItems are the STATUS items the session asks: UIDVALIDITY, UIDNEXT,
// MESSAGES, with HIGHESTMODSEQ where CONDSTORE is offered and MAILBOXID
// where OBJECTID is.
func (s *Session) StatusItems() string {
	items := "UIDVALIDITY UIDNEXT MESSAGES"
	if s.Has("CONDSTORE") {
		items += " HIGHESTMODSEQ"
	}
	if s.Has("OBJECTID") {
		items += " MAILBOXID"
	}
	return items
}

// Account sends NAMESPACE (where offered) and LIST "" "*" in one round
// trip, the LIST with RETURN (STATUS ...) when statuses is set and the
// server offers LIST-STATUS. probe, when not "" and the server offers
// CONDSTORE, is a mailbox whose STATUS (HIGHESTMODSEQ) goes first: a
// CONDSTORE enabling command (RFC 7162 §3.1) whose answer says nothing
// (see the IMAP source's status.go for why Dovecot needs it before the
// statuses). A refused NAMESPACE leaves the prefix empty and a refused
// LIST leaves List nil (the caller asks again); only a failure of the
// connection or a response it cannot parse is an error.
func (s *Session) Account(statuses bool, probe string) (Account, error) {
	var a Account
	var cmds []string
	if s.selected {
		cmds = append(cmds, s.unselect())
		s.selected, s.cur = false, current{}
	}
	if probe != "" && s.Has("CONDSTORE") {
		cmds = append(cmds, "STATUS "+Quote(EncodeMUTF7(probe))+" (HIGHESTMODSEQ)")
	}
	if s.Has("NAMESPACE") {
		cmds = append(cmds, "NAMESPACE")
	}
	list := `LIST "" "*"`
	if statuses && s.Has("LIST-STATUS") {
		list += ` RETURN (STATUS (` + s.StatusItems() + `))`
		a.Statuses = map[string]Status{}
	}
	cmds = append(cmds, list)
	var entries []ListEntry
	errs, err := s.run(cmds, func(u Untagged) error {
		switch u.Kind {
		case "NAMESPACE":
			if a.Namespace {
				return nil
			}
			prefix, delim, ok, err := ParseNamespace(u.Args)
			if err != nil {
				return err
			}
			a.Prefix, a.Delim, a.Namespace = prefix, delim, ok
		case "LIST":
			e, err := ParseList(u.Args)
			if err != nil {
				return err
			}
			entries = append(entries, e)
		case "STATUS":
			if a.Statuses == nil || !statuses {
				return nil
			}
			st, err := ParseStatus(u.Args)
			if err != nil {
				return err
			}
			st.Mailbox = normINBOX(st.Mailbox)
			if probe == "" || st.Mailbox != probe { // the probe's own answer is no folder's status
				a.Statuses[st.Mailbox] = st
			}
		}
		return nil
	})
	if err != nil {
		return Account{}, err
	}
	if errs[len(errs)-1] == nil {
		a.List = entries
		if entries == nil {
			a.List = []ListEntry{}
		}
	} else {
		a.Statuses = nil
	}
	return a, nil
}

// ParseList reads the arguments of a LIST response: attributes, delimiter
// (a quoted character or NIL) and mailbox, then extended data, which is
// ignored.
func ParseList(args []Value) (ListEntry, error) {
	var e ListEntry
	if len(args) < 3 || args[0].Kind != KindList {
		return e, errors.New("imap: bad LIST response")
	}
	for _, v := range args[0].List {
		if v.Kind != KindAtom {
			return e, errors.New("imap: bad LIST attribute")
		}
		e.Attrs = append(e.Attrs, v.Text)
	}
	delim, err := parseDelim(args[1])
	if err != nil {
		return e, err
	}
	e.Delim = delim
	name, ok := args[2].Str()
	if !ok || args[2].Kind == KindNil {
		return e, errors.New("imap: bad LIST mailbox")
	}
	e.Mailbox = normINBOX(DecodeMUTF7(name))
	return e, nil
}

// parseDelim reads a hierarchy delimiter: one character quoted, or NIL.
func parseDelim(v Value) (rune, error) {
	if v.Kind == KindNil {
		return 0, nil
	}
	r := []rune(v.Text)
	if v.Kind != KindString || len(r) != 1 {
		return 0, fmt.Errorf("imap: bad hierarchy delimiter %q", Clip(v.Text, 10))
	}
	return r[0], nil
}

// ParseNamespace reads the arguments of a NAMESPACE response and returns
// the first personal namespace; ok false when the server names none (NIL).
func ParseNamespace(args []Value) (prefix string, delim rune, ok bool, err error) {
	if len(args) < 3 {
		return "", 0, false, errors.New("imap: bad NAMESPACE response")
	}
	personal := args[0]
	switch {
	case personal.Kind == KindNil:
		return "", 0, false, nil
	case personal.Kind != KindList || len(personal.List) == 0 || personal.List[0].Kind != KindList || len(personal.List[0].List) < 2:
		return "", 0, false, errors.New("imap: bad NAMESPACE personal namespace")
	}
	first := personal.List[0].List
	p, isStr := first[0].Str()
	if !isStr || first[0].Kind == KindNil {
		return "", 0, false, errors.New("imap: bad NAMESPACE prefix")
	}
	d, err := parseDelim(first[1])
	if err != nil {
		return "", 0, false, err
	}
	return p, d, true, nil // imapclient does not decode the prefix either
}

// normINBOX spells INBOX in capitals, as imapclient does: the name is
// case-insensitive (RFC 9051 §5.1).
func normINBOX(name string) string {
	if strings.EqualFold(name, "INBOX") {
		return "INBOX"
	}
	return name
}
