package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
)

// demoPort is tried first so that reruns of the demo use the same source
// URL, and so the same checkpoint: a rerun then copies nothing.
const demoPort = "19993"

// demoOptions are the flags of 'demo'.
type demoOptions struct {
	dir      string
	messages int
	progress string
}

// runDemo serves sample mail from a built-in IMAP server and copies and
// verifies it through the 'copy' and 'verify' commands.
func runDemo(ctx context.Context, o *demoOptions, env *cliEnv) error {
	dir, n, progress := &o.dir, &o.messages, &o.progress
	tmp, err := os.MkdirTemp("", "mailferry-demo-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(tmp) }()
	addr, caFile, stop, err := startDemoServer(tmp, *n)
	if err != nil {
		return err
	}
	defer stop()
	src := "imaps://demo@" + addr
	dst := "maildir:" + *dir
	fmt.Fprintf(env.stderr, "demo: a built-in IMAP server at %s holds %d sample messages; copying them to %s\n", src, *n, *dir)
	denv := *env
	denv.getenv = func(k string) string {
		if k == "MAILFERRY_SRC_PASSWORD" {
			return "demo"
		}
		return env.getenv(k)
	}
	common := []string{"--ca-file", caFile}
	// The checkpoint lives inside the demo Maildir (a file there is no
	// folder to Maildir++ readers): deleting the directory starts over.
	cp := filepath.Join(*dir, ".mailferry-demo-checkpoint.jsonl")
	if _, err := execute(ctx, append([]string{"copy", src, dst, "--progress", *progress, "--checkpoint", cp}, common...), &denv); err != nil {
		return err
	}
	fmt.Fprintf(env.stderr, "\ndemo: verifying by content that every message arrived...\n")
	if _, err := execute(ctx, append([]string{"verify", src, dst}, common...), &denv); err != nil {
		return err
	}
	abs, _ := filepath.Abs(*dir)
	fmt.Fprintf(env.stderr, "\ndemo: done. Your mail is in %s (Maildir++, readable by Dovecot, mutt, neomutt).\n"+
		"Run 'mailferry demo' again: the checkpoint makes the rerun copy nothing.\n", abs)
	return nil
}

// startDemoServer runs go-imap's in-memory IMAP server over TLS on loopback,
// seeded with sample mail. It returns the address, a CA file trusting its
// certificate, and a stop function.
func startDemoServer(tmp string, n int) (addr, caFile string, stop func(), err error) {
	cert, certPEM, err := selfSigned()
	if err != nil {
		return "", "", nil, err
	}
	caFile = filepath.Join(tmp, "demo-ca.pem")
	if err := os.WriteFile(caFile, certPEM, 0o600); err != nil {
		return "", "", nil, err
	}
	mem := imapmemserver.New()
	user := imapmemserver.NewUser("demo", "demo")
	mem.AddUser(user)
	if err := seedDemo(user, n); err != nil {
		return "", "", nil, err
	}
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return mem.NewSession(), nil, nil
		},
		Caps:   imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapIMAP4rev2: {}},
		Logger: log.New(io.Discard, "", 0),
	})
	tlsCfg := &tls.Config{Certificates: []tls.Certificate{cert}}
	ln, err := tls.Listen("tcp", "127.0.0.1:"+demoPort, tlsCfg)
	if err != nil {
		ln, err = tls.Listen("tcp", "127.0.0.1:0", tlsCfg)
	}
	if err != nil {
		return "", "", nil, err
	}
	go func() { _ = srv.Serve(ln) }()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return "localhost:" + port, caFile, func() { _ = srv.Close() }, nil
}

func selfSigned() (tls.Certificate, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "localhost"},
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

// demoLiteral adapts a byte slice to imap.LiteralReader.
type demoLiteral struct{ *bytes.Reader }

func (l demoLiteral) Size() int64 { return l.Reader.Size() }

// seedDemo fills the demo account: a few folders (nested, non-ASCII), a
// spread of sizes, flags and dates, and some of the awkward messages real
// mailboxes hold (no Message-ID, bare LF, 8-bit headers, "From " lines).
func seedDemo(u *imapmemserver.User, n int) error {
	folders := []string{"INBOX", "Archive", "Archive/2024", "Sent", "Reisen/Übersicht"}
	for _, f := range folders {
		if err := u.Create(f, nil); err != nil {
			return err
		}
	}
	subjects := []string{"Quarterly report", "Lunch on Friday?", "Re: build is green", "Tickets für Berlin", "Invoice 2024-117", "Photos from the trip"}
	flagSets := [][]imap.Flag{nil, {imap.FlagSeen}, {imap.FlagSeen, imap.FlagFlagged}, {imap.FlagSeen, imap.FlagAnswered}}
	base := time.Date(2024, 1, 15, 9, 30, 0, 0, time.UTC)
	for i := 0; i < n; i++ {
		var b bytes.Buffer
		date := base.Add(time.Duration(i) * 7 * time.Hour)
		fmt.Fprintf(&b, "From: Sender %d <sender%d@example.org>\r\nTo: demo@example.org\r\nSubject: %s #%d\r\nDate: %s\r\n",
			i%17, i%17, subjects[i%len(subjects)], i, date.Format(time.RFC1123Z))
		if i%23 != 0 { // every 23rd message has no Message-ID, as some mailers send
			fmt.Fprintf(&b, "Message-ID: <demo-%d@example.org>\r\n", i)
		}
		b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n")
		fmt.Fprintf(&b, "Hello,\r\n\r\nthis is sample message %d.\r\nFrom here on it is just filler text.\r\n", i)
		if i%10 == 0 { // some bigger messages
			b.WriteString(strings.Repeat("Lorem ipsum dolor sit amet, consectetur adipiscing elit.\r\n", 2000+i*5))
		}
		body := b.Bytes()
		if i%31 == 5 {
			body = bytes.ReplaceAll(body, []byte("\r\n"), []byte("\n")) // bare LF
		}
		opts := &imap.AppendOptions{Flags: flagSets[i%len(flagSets)], Time: date}
		if _, err := u.Append(folders[i%len(folders)], demoLiteral{bytes.NewReader(body)}, opts); err != nil {
			return err
		}
	}
	return nil
}
