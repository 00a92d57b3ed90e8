package transport

import (
	"errors"
	"log/slog"

	"github.com/seed0811993b/conclave/auth"
)

const (
	// DefaultSendQueueBytes bounds the frames a Link holds for its writer.
	DefaultSendQueueBytes = 1 << 20
	// DefaultMaxPendingHandshakes bounds unauthenticated connections a
	// Listener handles at once.
	DefaultMaxPendingHandshakes = 256
)

// Config configures Links, Listeners and Dialers. A nil *Config is not usable:
// Auth is required. Other zero fields mean the documented defaults. A Config
// must not be modified after use.
type Config struct {
	// Auth configures the handshake every connection runs, and with it the
	// frame size limits. Required.
	Auth *auth.Config

	// SendQueueBytes bounds the encoded frames waiting for a Link's writer;
	// Send blocks (or fails with its context) when it is full. A single frame
	// larger than the bound is still accepted when the queue is empty.
	// Default: DefaultSendQueueBytes.
	SendQueueBytes int

	// MaxPendingHandshakes bounds the connections a Listener is
	// authenticating at once. When a new connection arrives at the bound, the
	// oldest pending one that has not yet sent a whole handshake message is
	// dropped while those are at least half the set, the oldest of all
	// otherwise: a flood of silent connections cannot lock out a legitimate
	// peer, even one whose login takes a while. Default:
	// DefaultMaxPendingHandshakes.
	MaxPendingHandshakes int

	// Logger receives failed handshakes (warn for authentication failures,
	// debug for the rest) and accept errors. Default: discard.
	Logger *slog.Logger
}

func (c *Config) check() error {
	if c == nil || c.Auth == nil {
		return errors.New("transport: Config.Auth is required")
	}
	return nil
}

func (c *Config) sendQueueBytes() int {
	if c != nil && c.SendQueueBytes > 0 {
		return c.SendQueueBytes
	}
	return DefaultSendQueueBytes
}

func (c *Config) maxPending() int {
	if c.MaxPendingHandshakes > 0 {
		return c.MaxPendingHandshakes
	}
	return DefaultMaxPendingHandshakes
}

func (c *Config) logger() *slog.Logger {
	if c != nil && c.Logger != nil {
		return c.Logger
	}
	return discard
}

var discard = slog.New(slog.DiscardHandler)
