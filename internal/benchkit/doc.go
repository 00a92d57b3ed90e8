// Package benchkit holds what the `go test -bench` benchmarks and the
// `conclave bench` command share: the raw framing anchor every Link figure is
// compared with, a self-signed TLS 1.3 setup for the handshake anchor, and the
// loops that run handshakes back to back on either side of a connection.
//
// Nothing here is part of conclave's API; it exists so that both ways of
// measuring run the same code.
package benchkit
