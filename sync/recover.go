package sync

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"runtime"
	"strings"
)

// PanicError is a panic in the engine or in an endpoint, recovered while
// copying one message (or listing one folder) so that the rest of the run
// goes on (docs/failure-model.md G2). It is permanent: the message is not
// retried in this run.
//
// Its text never holds the panic's value: a value built by code (a
// formatted string, an error from a protocol library) may hold a password,
// a token or message content (I6, F6). Only errors raised by the Go runtime
// itself (index out of range, nil map write...) keep their text, which the
// runtime builds from numbers and type names alone; any other value is
// named by its type.
type PanicError struct {
	// What is the runtime error's text, or "a value of type T".
	What string
	// Where is the function and file:line that panicked.
	Where string
}

func (e *PanicError) Error() string {
	return fmt.Sprintf("internal error: panic (%s) in %s; please report it", e.What, e.Where)
}

// recovered turns a recovered panic value into a *PanicError. It must be
// called from the deferred function that called recover, so that the
// panicking frame is still on the stack. The stack goes to the debug log as
// function names and file:line only: Go tracebacks would print argument
// words, which this never does.
func recovered(p any, log *slog.Logger) *PanicError {
	e := &PanicError{What: fmt.Sprintf("a value of type %T", p)}
	if re, ok := p.(runtime.Error); ok {
		e.What = re.Error()
	}
	pcs := make([]uintptr, 32)
	n := runtime.Callers(3, pcs) // skip Callers, recovered and the deferred func
	frames := runtime.CallersFrames(pcs[:n])
	var stack []string
	for {
		f, more := frames.Next()
		loc := fmt.Sprintf("%s (%s:%d)", f.Function, filepath.Base(f.File), f.Line)
		// The first frame outside the runtime's panic machinery is where
		// the panic was raised.
		if e.Where == "" && !strings.HasPrefix(f.Function, "runtime.") {
			e.Where = loc
		}
		stack = append(stack, loc)
		if !more {
			break
		}
	}
	if e.Where == "" {
		e.Where = "unknown code"
	}
	if log != nil {
		log.Debug("recovered panic", "err", e, "stack", strings.Join(stack, " <- "))
	}
	return e
}
