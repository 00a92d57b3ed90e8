package benchkit

import (
	"context"
	"net"
	"time"
)

// DialFunc connects and completes a handshake; *auth.Dialer's and
// *tls.Dialer's DialContext fit once the network and address are bound.
type DialFunc func(ctx context.Context) (net.Conn, error)

// Handshakes runs handshakes one after another: dial, then close the
// connection at once. Before each dial it asks more, passing how many
// handshakes have completed so far, and stops when more returns false. It
// returns the number completed and stops at the first error.
func Handshakes(ctx context.Context, dial DialFunc, more func(done int) bool) (int, error) {
	n := 0
	for more(n) {
		c, err := dial(ctx)
		if err != nil {
			return n, err
		}
		_ = c.Close()
		n++
	}
	return n, nil
}

// Until returns a more function for Handshakes that reports true until t.
func Until(t time.Time) func(int) bool {
	return func(int) bool { return time.Now().Before(t) }
}
