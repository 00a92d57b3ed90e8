package auth

import (
	"context"
	"net"
)

type listener struct {
	net.Listener
	cfg *Config
}

// NewListener returns a listener whose Accept wraps each connection with
// Server. Accept does no handshake, so a slow peer never holds up the accept
// loop: the handshake runs on the Conn's first Read or Write, or when the
// caller runs HandshakeContext in a goroutine of its own.
func NewListener(inner net.Listener, cfg *Config) net.Listener {
	return &listener{Listener: inner, cfg: cfg}
}

// Listen announces on the local address and returns a listener as
// NewListener does.
func Listen(network, address string, cfg *Config) (net.Listener, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	ln, err := net.Listen(network, address)
	if err != nil {
		return nil, err
	}
	return NewListener(ln, cfg), nil
}

// Accept waits for the next connection and returns it as a *Conn.
func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return Server(c, l.cfg), nil
}

// Dialer dials and then runs the client side of a handshake.
type Dialer struct {
	// NetDialer dials the underlying connection. Default: a zero net.Dialer.
	NetDialer *net.Dialer
	// Config configures the handshake; required.
	Config *Config
}

// DialContext connects to address and completes the handshake within ctx. The
// returned net.Conn is a *Conn.
func (d *Dialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
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
	c := Client(raw, d.Config)
	if err := c.HandshakeContext(ctx); err != nil {
		return nil, err // the failed handshake closed raw
	}
	return c, nil
}

// Dial connects to address and completes the handshake, as Dialer does.
func Dial(ctx context.Context, network, address string, cfg *Config) (*Conn, error) {
	c, err := (&Dialer{Config: cfg}).DialContext(ctx, network, address)
	if err != nil {
		return nil, err
	}
	return c.(*Conn), nil
}
