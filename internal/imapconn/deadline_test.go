package imapconn

import (
	"errors"
	"net"
	"testing"
	"time"
)

func TestDeadlineConn(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	dc := &Conn{Conn: a, timeout: 100 * time.Millisecond}
	defer dc.Close()
	buf := make([]byte, 1)

	start := time.Now()
	if _, err := dc.Read(buf); !isTimeout(err) {
		t.Fatalf("busy Read from a silent peer = %v, want a timeout", err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("busy Read timed out after %v", el)
	}
	// imapclient's absolute deadlines are ignored.
	dc.SetReadDeadline(time.Now().Add(-time.Hour))
	go b.Write([]byte("x"))
	if _, err := dc.Read(buf); err != nil {
		t.Fatalf("Read after an expired SetReadDeadline = %v, want data", err)
	}

	// Idle: a pending Read waits past the timeout, then times out once busy.
	dc.SetIdle(true)
	done := make(chan error, 1)
	go func() { _, err := dc.Read(buf); done <- err }()
	select {
	case err := <-done:
		t.Fatalf("idle Read returned %v, want it to wait", err)
	case <-time.After(300 * time.Millisecond):
	}
	dc.SetIdle(false)
	if err := <-done; !isTimeout(err) {
		t.Fatalf("Read after SetIdle(false) = %v, want a timeout", err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
