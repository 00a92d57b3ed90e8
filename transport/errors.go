package transport

import "errors"

// Sentinel errors; test them with errors.Is.
var (
	// ErrClosed is returned by operations on a Link or Listener after Close.
	ErrClosed = errors.New("transport: closed")

	// ErrFrameTooLarge reports a frame over a limit: a Send over the peer's
	// announced maximum (the Link stays usable), or a received frame over
	// ours (the Link fails).
	ErrFrameTooLarge = errors.New("transport: frame too large")

	// ErrProtocol reports bytes from the peer that break the framing, such as
	// a negative length.
	ErrProtocol = errors.New("transport: protocol violation")
)
