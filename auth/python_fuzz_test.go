package auth

import (
	"errors"
	"strings"
	"testing"

	"github.com/seed0811993b/conclave/internal/frame"
)

// FuzzPythonHandshake feeds up to three arbitrary frame payloads to each
// ModePython state machine. The KAT key and pinned randomness let the seeds
// reach every stage, valid MACs included.
func FuzzPythonHandshake(f *testing.F) {
	// Server's view: the client's answer, its challenge, its verdict.
	f.Add(false, []byte(katClientAnswerWire[4:]), []byte(katClientChallenge), []byte(pyWelcome))
	f.Add(true, []byte(katLegacyClientAnswer), []byte(katLegacyChallenge), []byte(pyWelcome))
	f.Add(false, []byte(katClientAnswerWire[4:]), []byte(katClientChallenge), []byte(pyFailure))
	f.Add(false, []byte("{md5}"+katLegacyClientAnswer), []byte(nil), []byte(nil))
	// Client's view: the server's challenge, its verdict, its answer.
	f.Add(false, []byte(katServerChallengeWire[4:]), []byte(pyWelcome), []byte(katServerAnswer))
	f.Add(true, []byte(katLegacyChallenge), []byte(pyWelcome), []byte(katLegacyServerAnswer))
	f.Add(false, []byte(katServerChallengeWire[4:]), []byte(pyFailure), []byte(nil))
	f.Add(false, []byte("#CHALLENGE#{sha3_256}"+string(katServerRandom)), []byte(nil), []byte(nil))

	f.Fuzz(func(t *testing.T, legacy bool, in1, in2, in3 []byte) {
		s := newPythonServer(katConfig(katServerRandom, legacy), endpoints{}).(*pythonServer)
		fuzzPythonMachine(t, s, &s.pyHandshake, legacy, in1, in2, in3)
		c := newPythonClient(katConfig(katClientRandom, legacy), endpoints{}).(*pythonClient)
		fuzzPythonMachine(t, c, &c.pyHandshake, legacy, in1, in2, in3)
	})
}

func fuzzPythonMachine(t *testing.T, h handshaker, ph *pyHandshake, legacy bool, ins ...[]byte) {
	// The pinned challenge must not outlive this run: the next run's other
	// machine would see it as reflected.
	defer ph.release()
	out, done, err := h.step(nil)
	for _, in := range ins {
		checkPythonStep(t, out, err)
		if err != nil {
			return
		}
		if done {
			if _, _, err := h.step(in); !errors.Is(err, ErrProtocol) {
				t.Fatalf("step after done: %v", err)
			}
			d := h.result().state.PythonDigest
			if d != "sha256" && (d != "md5" || !legacy) {
				t.Fatalf("done with digest %q, legacy %v", d, legacy)
			}
			return
		}
		out, done, err = h.step(in)
	}
	checkPythonStep(t, out, err)
}

// checkPythonStep checks what any step may return: one frame that fits
// Python's 256-byte handshake cap, and an error that wraps a sentinel and
// does not quote the key.
func checkPythonStep(t *testing.T, out []byte, err error) {
	t.Helper()
	// A step sends whole frames under Python's cap: one, or the client's
	// answer and challenge together.
	for rest := out; len(rest) > 0; {
		n, hdr, need, perr := frame.ParseHeader(rest, pyHandshakeFrame)
		if perr != nil || need > 0 || hdr+n > len(rest) {
			t.Fatalf("step sent %x: not whole frames under Python's cap", out)
		}
		rest = rest[hdr+n:]
	}
	if err == nil {
		return
	}
	if !errors.Is(err, ErrAuthFailed) && !errors.Is(err, ErrProtocol) &&
		!errors.Is(err, ErrLegacyDigest) && !errors.Is(err, ErrReflected) {
		t.Fatalf("error wraps no sentinel: %v", err)
	}
	if strings.Contains(err.Error(), string(katKey)) {
		t.Fatalf("error %q quotes the key", err)
	}
}
