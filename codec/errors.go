package codec

import "errors"

// Sentinel errors. Every error this package returns for bad input wraps one of
// these together with the byte offset where the problem was found, so callers
// test them with errors.Is and log the message for detail.
var (
	// ErrMalformed means the input is not valid msgpack, or not the shape the
	// caller asked for: a truncated value, the never-used code 0xc1, a length
	// that runs past the end of the input, or a field of the wrong type.
	ErrMalformed = errors.New("codec: malformed msgpack")

	// ErrTooDeep means arrays and maps are nested deeper than Limits.MaxDepth.
	ErrTooDeep = errors.New("codec: nesting too deep")

	// ErrTooLarge means a declared count or length is over a limit: more
	// elements than Limits.MaxItems, a longer string than Limits.MaxStringLen,
	// or an envelope topic longer than MaxTopicLen.
	ErrTooLarge = errors.New("codec: declared size too large")

	// ErrTrailingBytes means the input holds more bytes after the single
	// top-level value it must contain.
	ErrTrailingBytes = errors.New("codec: trailing bytes after value")

	// ErrVersion means an envelope carries a version this package does not know.
	ErrVersion = errors.New("codec: unknown envelope version")
)
