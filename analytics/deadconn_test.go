package analytics

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
)

func TestDeadConn(t *testing.T) {
	// What the driver returns when a pooled connection was closed under
	// it: its own message around the net package's error.
	closed := fmt.Errorf("query processing: failed to read first block packet from 127.0.0.1:9000 (conn_id=1): %w",
		&net.OpError{Op: "read", Net: "tcp", Err: net.ErrClosed})
	for _, c := range []struct {
		name string
		err  error
		want bool
	}{
		{"closed by the driver", closed, true},
		{"closed by the server", fmt.Errorf("read: %w", io.EOF), true},
		{"reset", &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}, true},
		{"broken pipe", &net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("write", syscall.EPIPE)}, true},
		{"server exception", errors.New("code: 60, message: Table cdnpilot.nope doesn't exist"), false},
		{"refused", &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, false},
		{"no error", nil, false},
	} {
		if got := deadConn(c.err); got != c.want {
			t.Errorf("%s: deadConn(%v) = %v, want %v", c.name, c.err, got, c.want)
		}
	}
}
