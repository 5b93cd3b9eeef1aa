package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	stdsync "sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/endpoints"

	"github.com/mailferry/mailferry/sync/mail"
)

// oauthProviders are the token endpoints a job may name instead of
// token_url.
var oauthProviders = map[string]string{
	"google":    endpoints.Google.TokenURL,
	"microsoft": endpoints.AzureAD("common").TokenURL,
}

// check reports a mistake in a side's OAuth2 settings, or nil.
func (o *oauth2Settings) check() error {
	if !o.enabled() {
		return nil
	}
	refresh := o.ClientID != "" || o.ClientSecret != "" || o.ClientSecretFile != "" || o.RefreshToken != "" ||
		o.RefreshTokenFile != "" || o.RefreshTokenCmd != "" || o.TokenURL != "" || o.Provider != ""
	switch {
	case o.TokenCmd != "" && refresh:
		return errors.New("give either token_cmd or the refresh settings (client_id, refresh_token...), not both")
	case o.TokenCmd != "":
		return nil
	case o.ClientID == "":
		return errors.New("client_id is missing (or use token_cmd)")
	case o.RefreshToken == "" && o.RefreshTokenFile == "" && o.RefreshTokenCmd == "":
		return errors.New("refresh_token, refresh_token_file or refresh_token_cmd is missing")
	case o.TokenURL == "" && o.Provider == "":
		return errors.New(`token_url or provider ("google", "microsoft") is missing`)
	case o.TokenURL != "" && o.Provider != "":
		return errors.New("give either token_url or provider, not both")
	case o.Provider != "" && oauthProviders[o.Provider] == "":
		return fmt.Errorf("provider %q: want google or microsoft (or give token_url)", o.Provider)
	case o.ClientSecret != "" && o.ClientSecretFile != "":
		return errors.New("give either client_secret or client_secret_file, not both")
	}
	return checkTokenURL(o.TokenURL)
}

// checkTokenURL refuses a token_url over which the client secret and the
// refresh token would cross the network in clear: https:// is accepted,
// plain http:// only to a loopback address (127.0.0.0/8, ::1, localhost:
// a local test endpoint or a proxy on this machine). It is checked when the
// config is loaded, before any secret is read. An empty URL is a provider's.
func checkTokenURL(raw string) error {
	if raw == "" {
		return nil
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return fmt.Errorf("token_url %q: %w", raw, err)
	case u.Scheme == "https" && u.Host != "":
		return nil
	case u.Scheme == "http" && loopbackHost(u.Hostname()):
		return nil
	case u.Scheme == "http":
		return fmt.Errorf("token_url %q is plain http to a host that is not loopback: the client secret and the refresh token would cross the network in clear; use https://", raw)
	}
	return fmt.Errorf("token_url %q: want an https:// URL", raw)
}

// loopbackHost reports whether host is localhost or a loopback address.
func loopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// token returns the side's OAuth2 access-token getter for
// mail.OpenOptions.Token, or nil when the side logs in with a password.
// Endpoints call it for every new connection: a token command runs each
// time, and a refreshed token is reused until it is about to expire.
func (s *sideFlags) token(env *cliEnv, log *slog.Logger) func(ctx context.Context) (string, error) {
	o := s.oauth2
	if !o.enabled() {
		return nil
	}
	what := s.side + "_oauth2"
	if o.TokenCmd != "" {
		return func(ctx context.Context) (string, error) {
			tok, err := secretCommand(ctx, o.TokenCmd, what+".token_cmd", s.hideEnv)
			if err == nil && tok == "" {
				err = &mail.ConfigError{Msg: what + ".token_cmd printed no token"}
			}
			return tok, err
		}
	}
	r := &refresher{what: what, settings: o, log: log, hideEnv: s.hideEnv}
	return r.token
}

// refresher gets access tokens from a refresh token (RFC 6749 §6) with
// golang.org/x/oauth2, and keeps the current one until it expires.
type refresher struct {
	what     string
	settings oauth2Settings
	log      *slog.Logger
	hideEnv  []string // for the refresh token command: see childEnv

	mu      stdsync.Mutex
	conf    *oauth2.Config
	refresh string // the refresh token; a server may rotate it
	cur     *oauth2.Token
}

// oauthHTTPTimeout bounds one token request.
const oauthHTTPTimeout = 30 * time.Second

func (r *refresher) token(ctx context.Context) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cur.Valid() {
		return r.cur.AccessToken, nil
	}
	if r.conf == nil {
		if err := r.setup(ctx); err != nil {
			return "", err
		}
	}
	hctx := context.WithValue(ctx, oauth2.HTTPClient, &http.Client{Timeout: oauthHTTPTimeout})
	tok, err := r.conf.TokenSource(hctx, &oauth2.Token{RefreshToken: r.refresh}).Token()
	if err != nil {
		var re *oauth2.RetrieveError
		switch {
		case ctx.Err() != nil:
			return "", ctx.Err()
		case errors.As(err, &re) && (re.ErrorCode == "invalid_grant" || re.ErrorCode == "invalid_client" || re.ErrorCode == "unauthorized_client"):
			return "", fmt.Errorf("oauth2: refresh at %s: %w: %s %s", r.conf.Endpoint.TokenURL, mail.ErrAuth, re.ErrorCode, re.ErrorDescription)
		case errors.As(err, &re):
			return "", fmt.Errorf("oauth2: refresh at %s: %s %s", r.conf.Endpoint.TokenURL, re.ErrorCode, re.ErrorDescription)
		}
		return "", mail.Temp(fmt.Errorf("oauth2: refresh at %s: %w", r.conf.Endpoint.TokenURL, err))
	}
	if tok.RefreshToken != "" && tok.RefreshToken != r.refresh {
		// Kept for this run only: the configured refresh token stays valid
		// with the providers mailferry names.
		r.refresh = tok.RefreshToken
		r.log.Debug("oauth2: the server sent a new refresh token", "side", strings.TrimSuffix(r.what, "_oauth2"))
	}
	r.cur = tok
	return tok.AccessToken, nil
}

// setup reads the client secret and refresh token, once.
func (r *refresher) setup(ctx context.Context) error {
	o := r.settings
	secret := o.ClientSecret
	if o.ClientSecretFile != "" {
		s, err := readSecretFile(o.ClientSecretFile, r.what+".client_secret_file", r.log)
		if err != nil {
			return err
		}
		secret = s
	}
	refresh := o.RefreshToken
	switch {
	case o.RefreshTokenFile != "":
		s, err := readSecretFile(o.RefreshTokenFile, r.what+".refresh_token_file", r.log)
		if err != nil {
			return err
		}
		refresh = s
	case o.RefreshTokenCmd != "":
		s, err := secretCommand(ctx, o.RefreshTokenCmd, r.what+".refresh_token_cmd", r.hideEnv)
		if err != nil {
			return err
		}
		refresh = s
	}
	if refresh == "" {
		return &mail.ConfigError{Msg: r.what + ": the refresh token is empty"}
	}
	tokenURL := o.TokenURL
	if tokenURL == "" {
		tokenURL = oauthProviders[o.Provider]
	}
	r.conf = &oauth2.Config{ClientID: o.ClientID, ClientSecret: secret, Endpoint: oauth2.Endpoint{TokenURL: tokenURL}}
	r.refresh = refresh
	return nil
}
