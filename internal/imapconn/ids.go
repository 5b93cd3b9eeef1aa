package imapconn

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/mailferry/mailferry/sync/mail"
)

// MakeID builds the message ID both IMAP endpoints use,
// "<uidvalidity>.<uid>": a UID means nothing without its UIDVALIDITY
// (RFC 9051 §2.3.1.1).
func MakeID(uidv, uid uint32) mail.ID {
	return mail.ID(fmt.Sprintf("%d.%d", uidv, uid))
}

// ParseID splits an ID made by MakeID; ok is false for anything else,
// including UID 0, which no message has.
func ParseID(id mail.ID) (uidv, uid uint32, ok bool) {
	a, b, found := strings.Cut(string(id), ".")
	if !found {
		return 0, 0, false
	}
	v, err1 := strconv.ParseUint(a, 10, 32)
	u, err2 := strconv.ParseUint(b, 10, 32)
	if err1 != nil || err2 != nil || u == 0 {
		return 0, 0, false
	}
	return uint32(v), uint32(u), true
}
