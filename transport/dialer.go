package transport

import (
	"context"
	"net"

	"github.com/seed0811993b/conclave/auth"
)

// ContextDialer dials a connection; *net.Dialer implements it.
type ContextDialer interface {
	DialContext(ctx context.Context, network, address string) (net.Conn, error)
}

// Dialer dials connections and runs the client side of the handshake on them.
type Dialer struct {
	// NetDialer makes the underlying connection. Default: a zero net.Dialer.
	NetDialer ContextDialer
	// Config configures the handshake and the Link; required.
	Config *Config
}

// Dial connects to address and returns an authenticated Link. ctx bounds the
// connect and the handshake.
func (d *Dialer) Dial(ctx context.Context, network, address string) (*Link, error) {
	if err := d.Config.check(); err != nil {
		return nil, err
	}
	nd := d.NetDialer
	if nd == nil {
		nd = &net.Dialer{}
	}
	raw, err := nd.DialContext(ctx, network, address)
	if err != nil {
		return nil, err
	}
	return NewLink(ctx, auth.Client(raw, d.Config.Auth), d.Config)
}

// Dial connects to address with a default Dialer.
func Dial(ctx context.Context, network, address string, cfg *Config) (*Link, error) {
	return (&Dialer{Config: cfg}).Dial(ctx, network, address)
}
