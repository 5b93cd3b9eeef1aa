package mail

import (
	"context"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"syscall"
)

// Sentinel errors. Endpoints wrap protocol errors around them with %w so the
// engine and the CLI can classify failures with errors.Is.
var (
	ErrNotFound        = errors.New("mail: message not found")
	ErrMailboxNotFound = errors.New("mail: mailbox not found")
	ErrAuth            = errors.New("mail: authentication rejected")
	ErrUnreachable     = errors.New("mail: endpoint unreachable")
	ErrUnsupported     = errors.New("mail: not supported")
	ErrExists          = errors.New("mail: already exists")
	ErrTooLarge        = errors.New("mail: message too large")
	// ErrNoSpace is a destination that is full: a server's OVERQUOTA (a
	// local sink's full disk is the system's ENOSPC or EDQUOT).
	ErrNoSpace = errors.New("mail: destination full")
	ErrClosed  = errors.New("mail: endpoint closed")
	ErrConfig  = errors.New("mail: bad configuration")
)

// TemporaryError marks an error worth retrying: the same call may succeed
// later (a dropped connection, a throttled server).
type TemporaryError struct{ Err error }

func (e *TemporaryError) Error() string { return e.Err.Error() }
func (e *TemporaryError) Unwrap() error { return e.Err }

// FatalError marks an error that must stop the whole run, not just one
// message: the disk is full, credentials were rejected, the checkpoint cannot
// be written.
type FatalError struct{ Err error }

func (e *FatalError) Error() string { return e.Err.Error() }
func (e *FatalError) Unwrap() error { return e.Err }

// ConfigError is a usage or configuration mistake: a bad URL, an unknown
// option. Hint tells the user what to do instead.
type ConfigError struct {
	Msg  string
	Hint string
}

func (e *ConfigError) Error() string {
	if e.Hint == "" {
		return e.Msg
	}
	return e.Msg + " (" + e.Hint + ")"
}
func (e *ConfigError) Unwrap() error { return ErrConfig }

// Temp wraps err as temporary; nil stays nil.
func Temp(err error) error {
	if err == nil {
		return nil
	}
	return &TemporaryError{err}
}

// MakeFatal wraps err as fatal; nil stays nil.
func MakeFatal(err error) error {
	if err == nil {
		return nil
	}
	return &FatalError{err}
}

// Temporary reports whether err is worth retrying: it is marked temporary, or
// it is a network timeout, a reset or an unexpected EOF. Cancellation is
// never temporary, and neither is anything fatal.
func Temporary(err error) bool {
	if err == nil || Fatal(err) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var te *TemporaryError
	if errors.As(err, &te) {
		return true
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, net.ErrClosed) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// Fatal reports whether err must stop the run: marked fatal, an
// authentication, configuration or unreachable-endpoint error, or a full or
// read-only disk.
func Fatal(err error) bool {
	var fe *FatalError
	return errors.As(err, &fe) || errors.Is(err, ErrAuth) || errors.Is(err, ErrConfig) ||
		errors.Is(err, ErrUnreachable) || errors.Is(err, syscall.ENOSPC) ||
		errors.Is(err, syscall.EDQUOT) || errors.Is(err, syscall.EROFS) || errors.Is(err, syscall.EACCES)
}

// DialError classifies an error from dialing or the TLS handshake: it is
// wrapped with ErrUnreachable so the CLI exits 5, and the message names the
// address. Certificate problems get a hint about --ca-file.
func DialError(addr string, err error) error {
	var ue x509.UnknownAuthorityError
	var he x509.HostnameError
	var ce x509.CertificateInvalidError
	hint := ""
	switch {
	case errors.As(err, &ue):
		hint = "; the server's certificate is not signed by a trusted CA: pass its CA with --ca-file"
	case errors.As(err, &he):
		hint = "; the certificate does not match the host name in the URL"
	case errors.As(err, &ce):
		hint = "; the certificate is invalid or expired"
	}
	return &unreachableError{addr: addr, err: err, hint: hint}
}

type unreachableError struct {
	addr string
	err  error
	hint string
}

func (e *unreachableError) Error() string   { return "connect " + e.addr + ": " + e.err.Error() + e.hint }
func (e *unreachableError) Unwrap() []error { return []error{ErrUnreachable, e.err} }

// PresentError is what a Sink's Put returns when it found the message
// already in the destination and stored nothing: an earlier run, or
// another tool, put it there (the IMAP sink's dedupe by Message-ID and
// content). ID is the existing copy's identifier, as Put would have
// returned it; Put returns it as its ID too. The engine records the
// message under ID and counts it as present, never as copied:
//
//	var pe *mail.PresentError
//	if errors.As(err, &pe) { /* already there, as pe.ID */ }
//
// It is neither temporary nor fatal. A caller that only wants the message
// stored may treat it as success.
type PresentError struct{ ID ID }

func (e *PresentError) Error() string {
	return "mail: already in the destination as " + string(e.ID)
}

// Present wraps id as a *PresentError.
func Present(id ID) error { return &PresentError{ID: id} }
