package imapconn

import (
	"context"
	"errors"
	"fmt"
	"strings"

	imap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailferry/mailferry/sync/mail"
)

// One login for both kinds of connection: Dial's imapclient.Client and
// DialRaw's connection driven by hand. The policy (what may be sent, and
// how), the secret lookup and the verdict live here once; each kind of
// connection only carries the commands (authSession).

// authSession is what authenticate needs from a connection. A server's
// NO or BAD comes back as *imap.Error; any other error is the transport's.
type authSession interface {
	// has reports a capability by its name in upper case.
	has(capability string) bool
	// login sends LOGIN.
	login(user, pass string) error
	// authenticate runs AUTHENTICATE mech with one client response ir.
	// A challenge after it is answered as mech wants (an OAuth2 error
	// challenge with the abort response, PLAIN's with a cancel); detail
	// is the decoded text of such a challenge (OAuth2: the server's JSON).
	authenticate(mech string, ir []byte) (detail string, err error)
}

// authenticate logs in on sess: with token, when not nil, by OAUTHBEARER
// or XOAUTH2; else with the password by AUTHENTICATE PLAIN when offered,
// LOGIN otherwise. loginPolicy decides first, before any secret is asked
// for.
func authenticate(ctx context.Context, sess authSession, cfg *Config, password, token func() (string, error), secure bool) error {
	usePlain, err := loginPolicy(cfg, sess.has, secure, token != nil)
	if err != nil {
		return err
	}
	if token != nil {
		return loginOAuth(ctx, sess, cfg, token)
	}
	pw, err := password()
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("imap: password for %s: %w", cfg.Ident(), ctx.Err())
		}
		return mail.MakeFatal(fmt.Errorf("imap: password for %s: %w", cfg.Ident(), err))
	}
	if usePlain {
		_, err = sess.authenticate("PLAIN", []byte("\x00"+cfg.User+"\x00"+pw))
	} else {
		err = sess.login(cfg.User, pw)
	}
	return authVerdict(cfg, "", err)
}

// loginOAuth authenticates with an OAuth2 access token.
func loginOAuth(ctx context.Context, sess authSession, cfg *Config, token func() (string, error)) error {
	mech := oauthMech(func(m string) bool { return sess.has("AUTH=" + m) })
	if mech == "" {
		return noOAuth(cfg)
	}
	tok, err := token()
	if err != nil {
		return tokenError(ctx, cfg, err)
	}
	if err := checkToken(cfg, tok); err != nil {
		return err
	}
	detail, err := sess.authenticate(mech, oauthResponse(mech, cfg.User, tok))
	var ie *imap.Error
	if err != nil && detail != "" && errors.As(err, &ie) {
		ie2 := *ie
		ie2.Text = strings.TrimSpace(ie.Text + " " + detail)
		err = &ie2
	}
	return authVerdict(cfg, mech, err)
}

// clientAuth is authSession over imapclient.
type clientAuth struct{ c *imapclient.Client }

func (a clientAuth) has(c string) bool { return a.c.Caps().Has(imap.Cap(c)) }

func (a clientAuth) login(user, pass string) error { return a.c.Login(user, pass).Wait() }

func (a clientAuth) authenticate(mech string, ir []byte) (string, error) {
	cl := &saslClient{mech: mech, resp: ir}
	err := a.c.Authenticate(cl)
	return cl.detail, err
}

// saslClient is the sasl.Client for imapclient.Authenticate: SASL PLAIN
// (RFC 4616, without an authorization identity) or an OAuth2 mechanism,
// each one response long. Writing it here avoids a dependency on go-sasl,
// which has no XOAUTH2 (docs/library-notes.md §1.2). An OAuth2 challenge
// after the response carries the server's reason, kept in detail.
type saslClient struct {
	mech   string
	resp   []byte
	detail string
}

func (s *saslClient) Start() (string, []byte, error) { return s.mech, s.resp, nil }

func (s *saslClient) Next(challenge []byte) ([]byte, error) {
	if s.mech == "PLAIN" {
		return nil, errors.New("imap: unexpected SASL PLAIN challenge")
	}
	s.detail = string(challenge)
	return oauthAbort(s.mech), nil
}
