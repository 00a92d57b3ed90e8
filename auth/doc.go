// Package auth implements the handshakes that turn a net.Conn into an
// authenticated one, and the keys they use.
//
// Two modes share one API, shaped like crypto/tls: Client and Server wrap a
// connection, HandshakeContext runs the handshake (Read and Write run it on
// first use), and the result is itself a net.Conn.
//
//   - ModeNative (conclave/1, the default): a mutual HMAC challenge bound to
//     the whole transcript, over an ephemeral hybrid X25519 + ML-KEM-768 key
//     exchange; afterwards every byte travels in sealed records
//     (AES-256-GCM or ChaCha20-Poly1305). See docs/protocol.md.
//   - ModePython: byte for byte the authkey handshake of Python's
//     multiprocessing.connection, so Python's Client and Listener can be the
//     peer. Traffic after it is plaintext; see docs/security.md.
//
// Keys are files of random bytes (GenerateKey, WriteKeyFile, LoadKeyFile);
// a Key never prints.
//
//	key, err := auth.LoadKeyFile("cluster.key")
//	...
//	conn, err := auth.Dial(ctx, "tcp", "10.0.0.7:7000", &auth.Config{Key: key})
//	...
//	conn.Write([]byte("sealed"))
//
// Failures wrap the sentinels in errors.go (ErrAuthFailed, ErrProtocol,
// ErrHandshakeTimeout, ErrUnsupportedVersion, ErrUnsupportedCipher, ...), so
// callers tell them apart with errors.Is.
package auth
