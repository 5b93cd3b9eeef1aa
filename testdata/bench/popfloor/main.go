// Command popfloor is the floor that mailferry's POP3 -> Maildir benchmark is compared
// with: the fastest plain read of a POP3 maildrop this machine can do. It logs in over
// implicit TLS, sends UIDL and LIST, then every RETR pipelined (RFC 2449 PIPELINING),
// written in chunks while another goroutine reads the responses to the end and
// discards the bodies. It stores nothing, so it is a lower bound, not a competitor.
//
//	popfloor -addr localhost:30995 -user alice -password-file F -ca-file cert.pem
//
// It prints "N messages, B bytes in S s" (its own clock, after login) on stdout.
package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"
)

func main() {
	addr := flag.String("addr", "localhost:30995", "pop3s `HOST:PORT`")
	user := flag.String("user", "alice", "user `NAME`")
	pwFile := flag.String("password-file", "", "read the password from the first line of `FILE`")
	caFile := flag.String("ca-file", "", "trust the CA certificates in PEM `FILE`")
	chunk := flag.Int("chunk", 64, "RETR commands per write")
	flag.Parse()
	if err := run(*addr, *user, *pwFile, *caFile, *chunk); err != nil {
		fmt.Fprintln(os.Stderr, "popfloor:", err)
		os.Exit(1)
	}
}

func run(addr, user, pwFile, caFile string, chunk int) error {
	pw := ""
	if pwFile != "" {
		b, err := os.ReadFile(pwFile)
		if err != nil {
			return err
		}
		pw, _, _ = strings.Cut(string(b), "\n")
	}
	cfg := &tls.Config{}
	if host, _, err := net.SplitHostPort(addr); err == nil {
		cfg.ServerName = host
	}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return err
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return fmt.Errorf("no certificates in %s", caFile)
		}
	}
	conn, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	r := bufio.NewReaderSize(conn, 64<<10)
	w := bufio.NewWriterSize(conn, 64<<10)

	if _, err := status(r); err != nil {
		return fmt.Errorf("greeting: %w", err)
	}
	// USER and PASS together: one round trip.
	fmt.Fprintf(w, "USER %s\r\nPASS %s\r\n", user, pw)
	if err := w.Flush(); err != nil {
		return err
	}
	for _, c := range []string{"USER", "PASS"} {
		if _, err := status(r); err != nil {
			return fmt.Errorf("%s: %w", c, err)
		}
	}
	start := time.Now()
	fmt.Fprintf(w, "UIDL\r\nLIST\r\n")
	if err := w.Flush(); err != nil {
		return err
	}
	var n int
	for i, c := range []string{"UIDL", "LIST"} {
		if _, err := status(r); err != nil {
			return fmt.Errorf("%s: %w", c, err)
		}
		lines, _, err := multiline(r)
		if err != nil {
			return fmt.Errorf("%s: %w", c, err)
		}
		if i == 1 {
			n = lines
		}
	}

	// The writer runs ahead of the reader; TCP flow control bounds how far.
	werr := make(chan error, 1)
	go func() {
		var b bytes.Buffer
		for i := 1; i <= n; i++ {
			fmt.Fprintf(&b, "RETR %d\r\n", i)
			if i%chunk == 0 || i == n {
				if _, err := conn.Write(b.Bytes()); err != nil {
					werr <- err
					return
				}
				b.Reset()
			}
		}
		werr <- nil
	}()
	var total int64
	for i := 1; i <= n; i++ {
		if _, err := status(r); err != nil {
			return fmt.Errorf("RETR %d: %w", i, err)
		}
		_, nb, err := multiline(r)
		if err != nil {
			return fmt.Errorf("RETR %d: %w", i, err)
		}
		total += nb
	}
	if err := <-werr; err != nil {
		return err
	}
	elapsed := time.Since(start)
	fmt.Fprintf(w, "QUIT\r\n")
	w.Flush()
	status(r)
	fmt.Printf("%d messages, %d bytes in %.3f s\n", n, total, elapsed.Seconds())
	return nil
}

// status reads one status line and fails on -ERR.
func status(r *bufio.Reader) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	if !strings.HasPrefix(line, "+OK") {
		return "", errors.New(strings.TrimSpace(line))
	}
	return line, nil
}

// multiline discards a dot-terminated response, returning its line and byte counts
// (bytes as sent, dot-stuffing included, terminator excluded).
func multiline(r *bufio.Reader) (lines int, n int64, err error) {
	for {
		line, err := r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// A line longer than the buffer: count it and go on reading it.
			n += int64(len(line))
			for errors.Is(err, bufio.ErrBufferFull) {
				line, err = r.ReadSlice('\n')
				n += int64(len(line))
			}
			if err != nil {
				return lines, n, err
			}
			lines++
			continue
		}
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return lines, n, err
		}
		if len(line) == 3 && line[0] == '.' && line[1] == '\r' {
			return lines, n, nil
		}
		n += int64(len(line))
		lines++
	}
}
