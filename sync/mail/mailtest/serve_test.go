package mailtest

import (
	"io"
	"net"
	"testing"
	"time"
)

// TestServe: each connection gets its own handler and is closed when the
// handler returns; at cleanup a handler blocked on a silent client is
// released, and none is left running.
func TestServe(t *testing.T) {
	released := make(chan struct{})
	var silent net.Conn // open until after the subtest's cleanup
	t.Run("Session", func(t *testing.T) {
		ln := Listen(t)
		Serve(t, ln, func(c net.Conn) {
			var b [1]byte
			if _, err := c.Read(b[:]); err != nil {
				return
			}
			if b[0] == 'q' { // quit: the handler returns, Serve closes
				io.WriteString(c, "bye")
				return
			}
			io.WriteString(c, "wait")
			io.Copy(io.Discard, c) // a silent client: only the cleanup ends this
			close(released)
		})
		var err error
		if silent, err = net.Dial("tcp", ln.Addr().String()); err != nil {
			t.Fatal(err)
		}
		silent.Write([]byte("w"))
		if b := make([]byte, 4); readFull(t, silent, b) != "wait" {
			t.Fatal("no answer from the waiting handler")
		}
		q, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer q.Close()
		q.SetReadDeadline(time.Now().Add(10 * time.Second))
		q.Write([]byte("q"))
		if b, err := io.ReadAll(q); string(b) != "bye" || err != nil {
			t.Errorf("after quit read %q, %v; want bye then EOF", b, err)
		}
	})
	if silent != nil {
		defer silent.Close()
	}
	select {
	case <-released:
	default:
		t.Error("a handler was still running after its test's cleanup")
	}
}

func readFull(t *testing.T, c net.Conn, b []byte) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatal(err)
	}
	return string(b)
}
