package maildirfmt

import (
	"sort"
	"strings"

	gomaildir "github.com/emersion/go-maildir"

	"github.com/mailferry/mailferry/sync/mail"
)

// FlagForwarded is the keyword stored as the Maildir "P" (passed) flag. It is
// the registered IMAP keyword for forwarded messages (RFC 5788). Maildir
// readers such as mutt show P; Dovecot keeps the letter but shows no IMAP
// flag for it (it stores $Forwarded itself as a dovecot-keywords letter,
// which this source also reads).
const FlagForwarded mail.Flag = "$Forwarded"

// letters maps the flags Maildir can store in a file name (the Maildir
// description's info "2," letters) to IMAP flags. The letters are go-maildir's
// constants.
var letters = []struct {
	letter gomaildir.Flag
	flag   mail.Flag
}{
	{gomaildir.FlagDraft, mail.FlagDraft},
	{gomaildir.FlagFlagged, mail.FlagFlagged},
	{gomaildir.FlagPassed, FlagForwarded},
	{gomaildir.FlagReplied, mail.FlagAnswered},
	{gomaildir.FlagSeen, mail.FlagSeen},
	{gomaildir.FlagTrashed, mail.FlagDeleted},
}

// FlagLetters returns the Maildir info letters for flags, sorted and without
// duplicates as the Maildir description requires: \Draft D, \Flagged F,
// $Forwarded P, \Answered R, \Seen S, \Deleted T. Other keywords have no
// fixed letter: they take the folder's dovecot-keywords letters (see
// Keywords.Letters, which follow these in the info). IMAP flags are
// case-insensitive, so `\SEEN` counts as \Seen.
func FlagLetters(flags []mail.Flag) string {
	var b []byte
	for _, l := range letters {
		for _, f := range flags {
			if strings.EqualFold(string(f), string(l.flag)) {
				b = append(b, byte(l.letter))
				break
			}
		}
	}
	return string(b)
}

// splitName splits a Maildir file name into its unique part (our ID) and the
// info after the first ':'.
func splitName(name string) (id, info string) {
	if i := strings.IndexByte(name, ':'); i >= 0 {
		return name[:i], name[i+1:]
	}
	return name, ""
}

// FlagsOf returns the flags the file name name says (a path whose last
// element is "<id>:2,<letters>"), keywords through kw.
func FlagsOf(name string, kw Keywords) []mail.Flag {
	_, info := splitName(name[strings.LastIndexByte(name, '/')+1:])
	return parseFlags(info, kw)
}

// parseFlags returns the flags in info ("2,FS"): the system letters, and
// lowercase letters a-z mapped through the folder's dovecot-keywords (kw may
// be nil). Unknown letters are ignored. The result is never nil: a Maildir
// message with no flags has the empty set, unlike a source without flags.
func parseFlags(info string, kw []string) []mail.Flag {
	flags := []mail.Flag{}
	if !strings.HasPrefix(info, "2,") {
		return flags
	}
	for i := 2; i < len(info); i++ {
		c := info[i]
		if c >= 'a' && c <= 'z' {
			if n := int(c - 'a'); n < len(kw) && kw[n] != "" {
				flags = append(flags, mail.Flag(kw[n]))
			}
			continue
		}
		for _, l := range letters {
			if byte(l.letter) == c {
				flags = append(flags, l.flag)
				break
			}
		}
	}
	sort.Slice(flags, func(i, j int) bool { return flags[i] < flags[j] })
	out := flags[:0]
	for i, f := range flags {
		if i == 0 || f != flags[i-1] {
			out = append(out, f)
		}
	}
	return out
}
