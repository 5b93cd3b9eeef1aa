package imapconn

import (
	"context"
	"fmt"
	"strings"

	"github.com/mailferry/mailferry/sync/mail"
)

// OAuth2 login (mail.OpenOptions.Token): SASL OAUTHBEARER (RFC 7628) when
// the server offers it, else XOAUTH2 (Gmail, Microsoft 365, which offers
// only XOAUTH2). go-sasl has no XOAUTH2 (docs/library-notes.md §1.2), and both
// clients are a few lines, so they live here.

// oauthMech returns the mechanism to use, or "" when the server offers
// neither. has reports an AUTH= capability.
func oauthMech(has func(mech string) bool) string {
	switch {
	case has("OAUTHBEARER"):
		return "OAUTHBEARER"
	case has("XOAUTH2"):
		return "XOAUTH2"
	}
	return ""
}

// oauthResponse is the client's (only) response for mech.
func oauthResponse(mech, user, token string) []byte {
	if mech == "OAUTHBEARER" {
		// GS2 header with the authorization identity, then key/value pairs
		// (RFC 7628 §3.1); ',' and '=' in the name are escaped (RFC 5801).
		a := strings.NewReplacer("=", "=3D", ",", "=2C").Replace(user)
		return []byte("n,a=" + a + ",\x01auth=Bearer " + token + "\x01\x01")
	}
	return []byte("user=" + user + "\x01auth=Bearer " + token + "\x01\x01")
}

// oauthAbort is the client's answer to an error challenge: the exchange
// must end with the server's NO (RFC 7628 §3.2.3: a single %x01 for
// OAUTHBEARER; an empty response for XOAUTH2).
func oauthAbort(mech string) []byte {
	if mech == "OAUTHBEARER" {
		return []byte{1}
	}
	return []byte{}
}

// checkToken refuses a token that would break the SASL encoding.
func checkToken(cfg *Config, tok string) error {
	if tok == "" || strings.ContainsAny(tok, "\x00\x01\r\n") {
		return &mail.ConfigError{Msg: "imap: the OAuth2 token for " + cfg.Ident() + " is empty or holds a control character"}
	}
	return nil
}

// tokenError classifies a failure to get a token, as login does for a
// password.
func tokenError(ctx context.Context, cfg *Config, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("imap: oauth2 token for %s: %w", cfg.Ident(), ctx.Err())
	}
	if mail.Temporary(err) {
		return fmt.Errorf("imap: oauth2 token for %s: %w", cfg.Ident(), err)
	}
	return mail.MakeFatal(fmt.Errorf("imap: oauth2 token for %s: %w", cfg.Ident(), err))
}

// noOAuth is the error for a server that offers no OAuth2 mechanism.
func noOAuth(cfg *Config) error {
	return &mail.ConfigError{Msg: fmt.Sprintf("imap: %s offers neither AUTH=OAUTHBEARER nor AUTH=XOAUTH2", cfg.Ident()),
		Hint: "log in with a password instead of OAuth2"}
}
