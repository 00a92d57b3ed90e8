//go:build race

package node

// raceEnabled reports whether the race detector is on: it slows the
// crypto of 1225 handshakes about tenfold.
const raceEnabled = true
