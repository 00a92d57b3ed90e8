package node

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/seed0811993b/conclave/auth"
)

// discoTestKey is the cluster key of the test clusters.
var discoTestKey = auth.Key(bytes.Repeat([]byte{0x5a}, 32))

// discoWaitFor polls cond until it holds, failing the test after 5 s. It
// stands in for sleeps: tests wait for conditions, never for time.
func discoWaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after 5s waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// discoNewBoot returns a fresh boot id.
func discoNewBoot(t testing.TB) string {
	t.Helper()
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b[:])
}

// discoRecorder collects the events one discovery delivers.
type discoRecorder struct {
	mu     sync.Mutex
	events []discoEvent
}

// record is an onEvent callback.
func (r *discoRecorder) record(e discoEvent) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

// find returns the last event of kind about member id.
func (r *discoRecorder) find(kind discoEventKind, id string) (discoEvent, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.events) - 1; i >= 0; i-- {
		if e := r.events[i]; e.Kind == kind && e.Member.ID == id {
			return e, true
		}
	}
	return discoEvent{}, false
}

// all returns a copy of the events so far.
func (r *discoRecorder) all() []discoEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

// discoTestConfig is a GossipFast config on 127.0.0.1, port 0.
func discoTestConfig(t testing.TB, name string, linkPort int) discoveryConfig {
	return discoveryConfig{
		Name:     name,
		Boot:     discoNewBoot(t),
		Key:      discoTestKey,
		Cluster:  "test",
		Bind:     "127.0.0.1:0",
		LinkPort: linkPort,
		Profile:  GossipFast,
	}
}

// discoStart starts a discovery that records its events and is shut down
// when the test ends.
func discoStart(t testing.TB, cfg discoveryConfig) (*discovery, *discoRecorder) {
	t.Helper()
	rec := &discoRecorder{}
	d, err := startDiscovery(cfg, rec.record)
	if err != nil {
		t.Fatalf("startDiscovery(%s): %v", cfg.Name, err)
	}
	t.Cleanup(func() {
		if err := d.shutdown(); err != nil {
			t.Errorf("shutdown %s: %v", d.id, err)
		}
	})
	return d, rec
}

// discoJoinTo joins d to the gossip address of seed.
func discoJoinTo(t testing.TB, d, seed *discovery) {
	t.Helper()
	n, err := d.join(context.Background(), []string{seed.gossipAddr().String()})
	if err != nil || n != 1 {
		t.Fatalf("%s joins %s: n=%d err=%v", d.id, seed.id, n, err)
	}
}

// discoIDs lists the IDs of ms.
func discoIDs(ms []memberInfo) []string {
	ids := make([]string, len(ms))
	for i, m := range ms {
		ids[i] = m.ID
	}
	return ids
}

// discoSees reports whether d's members are exactly the given ones.
func discoSees(d *discovery, want ...*discovery) func() bool {
	return func() bool {
		ids := make([]string, len(want))
		for i, w := range want {
			ids[i] = w.id
		}
		slices.Sort(ids)
		return slices.Equal(discoIDs(d.members()), ids)
	}
}

func TestDiscoJoinThree(t *testing.T) {
	t.Parallel()
	ds := make([]*discovery, 3)
	recs := make([]*discoRecorder, 3)
	for i, name := range []string{"alpha", "beta", "gamma"} {
		cfg := discoTestConfig(t, name, 7000+i)
		cfg.Tags = map[string]string{"role": name + "-role", "zone": "z1"}
		ds[i], recs[i] = discoStart(t, cfg)
	}
	for _, d := range ds {
		ap := d.gossipAddr()
		if ap.Addr().String() != "127.0.0.1" || ap.Port() == 0 {
			t.Fatalf("%s gossipAddr = %v, want 127.0.0.1 with a real port", d.id, ap)
		}
	}
	discoJoinTo(t, ds[1], ds[0])
	discoJoinTo(t, ds[2], ds[0])

	for i, d := range ds {
		others := slices.Delete(slices.Clone(ds), i, i+1)
		discoWaitFor(t, d.id+" to see the other two", discoSees(d, others...))
		for _, o := range others {
			discoWaitFor(t, d.id+" to get a join event for "+o.id, func() bool {
				_, ok := recs[i].find(discoJoin, o.id)
				return ok
			})
		}
	}
	for i, d := range ds {
		loc := d.local()
		if loc.ID != d.id || loc.Name+"#"+loc.Boot != loc.ID {
			t.Errorf("local() = %+v, inconsistent ID", loc)
		}
		if loc.LinkAddr.String() != fmt.Sprintf("127.0.0.1:%d", 7000+i) {
			t.Errorf("local().LinkAddr = %v", loc.LinkAddr)
		}
		for j, o := range ds {
			if j == i {
				continue
			}
			want := o.local()
			got := discoMemberByID(d.members(), o.id)
			ev, _ := recs[i].find(discoJoin, o.id)
			for _, m := range []memberInfo{got, ev.Member} {
				if m.ID != want.ID || m.Name != want.Name || m.Boot != want.Boot ||
					m.LinkAddr != want.LinkAddr || !maps.Equal(m.Tags, want.Tags) {
					t.Errorf("%s sees %+v, want %+v", d.id, m, want)
				}
			}
			if got.LinkAddr.Port() != uint16(7000+j) || got.LinkAddr.Addr().String() != "127.0.0.1" {
				t.Errorf("LinkAddr %v, want 127.0.0.1:%d", got.LinkAddr, 7000+j)
			}
		}
	}
	for _, r := range recs {
		for _, e := range r.all() {
			if e.Kind != discoJoin {
				t.Errorf("unexpected event %v %s", e.Kind, e.Member.ID)
			}
		}
	}
}

// discoMemberByID finds id in ms (zero memberInfo if absent).
func discoMemberByID(ms []memberInfo, id string) memberInfo {
	for _, m := range ms {
		if m.ID == id {
			return m
		}
	}
	return memberInfo{}
}

func TestDiscoSetTagsUpdate(t *testing.T) {
	t.Parallel()
	a, _ := discoStart(t, discoTestConfig(t, "a", 1))
	b, recB := discoStart(t, discoTestConfig(t, "b", 2))
	discoJoinTo(t, b, a)
	discoWaitFor(t, "b to see a", discoSees(b, a))

	newTags := map[string]string{"role": "leader", "v": ""}
	if err := a.setTags(newTags); err != nil {
		t.Fatal(err)
	}
	newTags["role"] = "mutated after the call" // setTags must have copied
	discoWaitFor(t, "b to get an update with a's new tags", func() bool {
		e, ok := recB.find(discoUpdate, a.id)
		return ok && maps.Equal(e.Member.Tags, map[string]string{"role": "leader", "v": ""})
	})
	if got := discoMemberByID(b.members(), a.id).Tags["role"]; got != "leader" {
		t.Errorf("b.members() shows role %q", got)
	}
	if got := a.local().Tags["role"]; got != "leader" {
		t.Errorf("a.local() shows role %q", got)
	}

	big := map[string]string{"k": strings.Repeat("x", 200), "l": strings.Repeat("y", 200)}
	if err := a.setTags(big); !errors.Is(err, errMetaTooLarge) {
		t.Fatalf("setTags(too big) = %v, want errMetaTooLarge", err)
	}
	if got := a.local().Tags["role"]; got != "leader" {
		t.Errorf("a failed setTags changed local tags: role=%q", got)
	}
}

func TestDiscoLeaveAndFailure(t *testing.T) {
	t.Parallel()
	a, recA := discoStart(t, discoTestConfig(t, "a", 1))
	b, recB := discoStart(t, discoTestConfig(t, "b", 2))
	c, _ := discoStart(t, discoTestConfig(t, "c", 3))
	discoJoinTo(t, b, a)
	discoJoinTo(t, c, a)
	discoWaitFor(t, "a to see b and c", discoSees(a, b, c))
	discoWaitFor(t, "b to see a and c", discoSees(b, a, c))

	if err := c.leave(time.Second); err != nil {
		t.Fatal(err)
	}
	for _, r := range []*discoRecorder{recA, recB} {
		discoWaitFor(t, "a leave event for c", func() bool {
			_, ok := r.find(discoLeave, c.id)
			return ok
		})
	}
	discoWaitFor(t, "a to drop c", discoSees(a, b))
	if err := c.setTags(map[string]string{"x": "y"}); err == nil {
		t.Error("setTags after leave succeeded")
	}
	if err := c.shutdown(); err != nil {
		t.Fatal(err)
	}
	if err := c.leave(time.Second); err == nil {
		t.Error("leave after shutdown succeeded") // memberlist itself would panic
	}

	// b vanishes without a word: failure detection has to notice.
	start := time.Now()
	if err := b.shutdown(); err != nil {
		t.Fatal(err)
	}
	discoWaitFor(t, "a leave event for b (failure detection)", func() bool {
		_, ok := recA.find(discoLeave, b.id)
		return ok
	})
	t.Logf("GossipFast noticed a dead member after %v", time.Since(start).Round(time.Millisecond))
	if ms := a.members(); len(ms) != 0 {
		t.Errorf("a still sees %v", discoIDs(ms))
	}
}

func TestDiscoWrongKeyOrCluster(t *testing.T) {
	t.Parallel()
	a, recA := discoStart(t, discoTestConfig(t, "a", 1))
	b, recB := discoStart(t, discoTestConfig(t, "b", 2))
	discoJoinTo(t, b, a)
	discoWaitFor(t, "a to see b", discoSees(a, b))

	otherKey := auth.Key(bytes.Repeat([]byte{0xa5}, 32))
	wrongKey := discoTestConfig(t, "intruder", 3)
	wrongKey.Key = otherKey
	wrongCluster := discoTestConfig(t, "stranger", 4)
	wrongCluster.Cluster = "other"
	for _, tc := range []struct {
		name string
		cfg  discoveryConfig
		want string
	}{
		{"key", wrongKey, "different cluster key"},
		{"cluster", wrongCluster, "different cluster name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x, recX := discoStart(t, tc.cfg)
			n, err := x.join(context.Background(), []string{a.gossipAddr().String()})
			if err == nil || n != 0 {
				t.Fatalf("join with a wrong %s: n=%d err=%v", tc.name, n, err)
			}
			t.Logf("join with a wrong %s: %v", tc.name, err)
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), a.gossipAddr().String()) {
				t.Errorf("error %q does not mention %q and the seed", err, tc.want)
			}
			for _, k := range []auth.Key{discoTestKey, otherKey} {
				if strings.Contains(err.Error(), string(k)) || strings.Contains(err.Error(), hex.EncodeToString(k)) {
					t.Error("error reveals a key")
				}
			}
			// The other direction: the good cluster cannot pull x in either.
			if n, err := a.join(context.Background(), []string{x.gossipAddr().String()}); err == nil || n != 0 {
				t.Fatalf("a joining the %s-mismatched node: n=%d err=%v", tc.name, n, err)
			}
			// A tag change that reaches b proves gossip has flowed since.
			if err := a.setTags(map[string]string{"after": tc.name}); err != nil {
				t.Fatal(err)
			}
			discoWaitFor(t, "b to see a's tag", func() bool {
				return discoMemberByID(b.members(), a.id).Tags["after"] == tc.name
			})
			for _, d := range []*discovery{a, b} {
				if d.ml.NumMembers() != 2 {
					t.Errorf("%s has %d memberlist members, want 2", d.id, d.ml.NumMembers())
				}
			}
			if !discoSees(a, b)() || !discoSees(b, a)() || len(x.members()) != 0 || x.ml.NumMembers() != 1 {
				t.Errorf("membership leaked: a=%v b=%v x=%v", discoIDs(a.members()), discoIDs(b.members()), discoIDs(x.members()))
			}
			for _, r := range []*discoRecorder{recA, recB} {
				if _, ok := r.find(discoJoin, x.id); ok {
					t.Errorf("join event for %s", x.id)
				}
			}
			if evs := recX.all(); len(evs) != 0 {
				t.Errorf("%s got events %v", x.id, evs)
			}
		})
	}
}

// discoMsgpackStr appends a msgpack str (fixstr or str8).
func discoMsgpackStr(b []byte, s string) []byte {
	if len(s) < 32 {
		b = append(b, 0xa0|byte(len(s)))
	} else {
		b = append(b, 0xd9, byte(len(s)))
	}
	return append(b, s...)
}

// discoMsgpackBin appends a msgpack bin8.
func discoMsgpackBin(b, v []byte) []byte {
	return append(append(b, 0xc4, byte(len(v))), v...)
}

// discoAlivePacket builds a memberlist alive message, framed and labelled
// the way memberlist v0.7.0 sends it, for node name at 127.0.0.1:port with
// the given meta. With key nil it is sent in plaintext, otherwise sealed
// with AES-GCM under key (encryption version 1: version, nonce, sealed).
func discoAlivePacket(t testing.TB, label, name string, port uint16, meta, key []byte) []byte {
	t.Helper()
	msg := []byte{4, 0x86} // aliveMsg, then a map of the six fields of memberlist's alive
	msg = discoMsgpackStr(msg, "Incarnation")
	msg = append(msg, 0xce, 0, 0, 0, 1)
	msg = discoMsgpackStr(msg, "Node")
	msg = discoMsgpackStr(msg, name)
	msg = discoMsgpackStr(msg, "Addr")
	msg = discoMsgpackBin(msg, []byte{127, 0, 0, 1})
	msg = discoMsgpackStr(msg, "Port")
	msg = binary.BigEndian.AppendUint16(append(msg, 0xcd), port)
	msg = discoMsgpackStr(msg, "Meta")
	msg = discoMsgpackBin(msg, meta)
	msg = discoMsgpackStr(msg, "Vsn")
	msg = append(msg, 0x96, 1, 5, 2, 0, 0, 0) // Vsn as memberlist's BuildVsnArray makes it
	if key != nil {
		block, err := aes.NewCipher(key)
		if err != nil {
			t.Fatal(err)
		}
		gcm, err := cipher.NewGCM(block)
		if err != nil {
			t.Fatal(err)
		}
		sealed := make([]byte, 1+gcm.NonceSize(), 1+gcm.NonceSize()+len(msg)+gcm.Overhead())
		sealed[0] = 1
		if _, err := rand.Read(sealed[1:]); err != nil {
			t.Fatal(err)
		}
		msg = gcm.Seal(sealed, sealed[1:], msg, []byte(label))
	}
	pkt, err := memberlist.AddLabelHeaderToPacket(msg, label)
	if err != nil {
		t.Fatal(err)
	}
	return pkt
}

func TestDiscoHostilePackets(t *testing.T) {
	t.Parallel()
	logs := &discoLogStore{}
	vc := discoTestConfig(t, "victim", 1)
	vc.Logger = slog.New(&discoLogRecorder{store: logs})
	v, recV := discoStart(t, vc)
	conn, err := net.Dial("udp", v.gossipAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	send := func(p []byte) {
		t.Helper()
		if _, err := conn.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	label := discoLabelPrefix + "test"
	meta := func(name string) []byte {
		b, err := encodeMeta(nodeMeta{LinkPort: 9, Name: name})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	// An unused port for the fake members to claim, so that nobody answers
	// their probes.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadPort := uint16(pc.LocalAddr().(*net.UDPAddr).Port)
	pc.Close()

	for _, n := range []int{0, 1, 2, 17, 100, 1400} {
		junk := make([]byte, n)
		_, _ = rand.Read(junk)
		send(junk)
	}
	const boot = "0123456789abcdef"
	right := gossipKey(discoTestKey, "test")
	wrong := gossipKey(auth.Key(bytes.Repeat([]byte{1}, 32)), "test")
	send(discoAlivePacket(t, label, "plain#"+boot, deadPort, meta("plain"), nil))
	send(discoAlivePacket(t, label, "wrongkey#"+boot, deadPort, meta("wrongkey"), wrong))
	send(discoAlivePacket(t, "conclave/other", "wronglabel#"+boot, deadPort, meta("wronglabel"), right))
	// A key holder is trusted with membership but not with our parser: bad
	// meta, a name that differs from the meta's, or no boot id is refused.
	send(discoAlivePacket(t, label, "badmeta#"+boot, deadPort, []byte{1, 0, 9, 200}, right))
	send(discoAlivePacket(t, label, "liar#"+boot, deadPort, meta("victim"), right))
	send(discoAlivePacket(t, label, "noboot", deadPort, meta("noboot"), right))
	// The control: the same framing with the right key is accepted, which
	// shows the packets above were plausible and were refused for their
	// flaw. memberlist drops undecryptable packets as it reads them, in
	// order, but handles alive messages later and newest first, so the
	// refusals of the key holder's three are waited for in the log.
	send(discoAlivePacket(t, label, "control#"+boot, deadPort, meta("control"), right))
	discoWaitFor(t, "the control member", func() bool {
		return len(v.members()) > 0
	})
	var refused []string
	discoWaitFor(t, "three refusals logged at warn", func() bool {
		for _, r := range logs.take() {
			if r.Level == slog.LevelWarn && strings.HasPrefix(r.Message, "ignoring alive message for") {
				refused = append(refused, r.Message)
			}
		}
		return len(refused) >= 3
	})
	for _, name := range []string{"badmeta#", "liar#", "'noboot'"} {
		if !slices.ContainsFunc(refused, func(m string) bool { return strings.Contains(m, name) }) {
			t.Errorf("no refusal of %s logged: %q", name, refused)
		}
	}
	if ids := discoIDs(v.members()); !slices.Equal(ids, []string{"control#" + boot}) {
		t.Errorf("members after hostile packets: %v", ids)
	}
	for _, n := range v.ml.Members() {
		if n.Name != v.id && n.Name != "control#"+boot {
			t.Errorf("memberlist accepted %q", n.Name)
		}
	}
	for _, e := range recV.all() {
		if e.Member.ID != "control#"+boot {
			t.Errorf("event for %s", e.Member.ID)
		}
	}
}

func TestDiscoCallbackReentry(t *testing.T) {
	t.Parallel()
	ready := make(chan struct{})
	var a *discovery
	var mu sync.Mutex
	var problems []string
	onEvent := func(e discoEvent) {
		<-ready
		if e.Kind != discoJoin {
			return
		}
		// Both calls would deadlock if events were delivered under
		// memberlist's lock.
		if m := discoMemberByID(a.members(), e.Member.ID); m.ID == "" {
			mu.Lock()
			problems = append(problems, "members() inside onEvent misses "+e.Member.ID)
			mu.Unlock()
		}
		if err := a.setTags(map[string]string{"greeted": e.Member.Name}); err != nil {
			mu.Lock()
			problems = append(problems, err.Error())
			mu.Unlock()
		}
	}
	var err error
	a, err = startDiscovery(discoTestConfig(t, "a", 1), onEvent)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.shutdown() })
	close(ready)
	b, _ := discoStart(t, discoTestConfig(t, "b", 2))
	discoJoinTo(t, b, a)
	discoWaitFor(t, "b to see the tag a set from its callback", func() bool {
		return discoMemberByID(b.members(), a.id).Tags["greeted"] == "b"
	})
	mu.Lock()
	defer mu.Unlock()
	for _, p := range problems {
		t.Error(p)
	}
}

func TestDiscoRestart(t *testing.T) {
	t.Parallel()
	a, recA := discoStart(t, discoTestConfig(t, "a", 1))
	old, _ := discoStart(t, discoTestConfig(t, "b", 2))
	discoJoinTo(t, old, a)
	discoWaitFor(t, "a to see the first b", discoSees(a, old))
	if err := old.shutdown(); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	cfg := discoTestConfig(t, "b", 3) // same name, new boot, new port
	fresh, _ := discoStart(t, cfg)
	if fresh.id == old.id || fresh.gossipAddr() == old.gossipAddr() {
		t.Fatalf("restart reused id or address: %s %v", fresh.id, fresh.gossipAddr())
	}
	discoJoinTo(t, fresh, a)
	discoWaitFor(t, "a to accept the restarted b", func() bool {
		_, ok := recA.find(discoJoin, fresh.id)
		return ok
	})
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("restarted member took %v to be accepted", d)
	}
	discoWaitFor(t, "a to drop the old b", discoSees(a, fresh))
	m := discoMemberByID(a.members(), fresh.id)
	if m.Name != "b" || m.Boot != cfg.Boot || m.LinkAddr.Port() != 3 {
		t.Errorf("restarted member seen as %+v", m)
	}
}

func TestDiscoConfigErrors(t *testing.T) {
	t.Parallel()
	ok := discoTestConfig(t, "n", 1)
	for _, tc := range []struct {
		name string
		edit func(*discoveryConfig)
		want string
	}{
		{"empty name", func(c *discoveryConfig) { c.Name = "" }, "node name"},
		{"long name", func(c *discoveryConfig) { c.Name = strings.Repeat("n", 65) }, "node name"},
		{"hash in name", func(c *discoveryConfig) { c.Name = "a#b" }, "only letters"},
		{"space in name", func(c *discoveryConfig) { c.Name = "a b" }, "only letters"},
		{"short boot", func(c *discoveryConfig) { c.Boot = "abc" }, "boot id"},
		{"upper boot", func(c *discoveryConfig) { c.Boot = "0123456789ABCDEF" }, "boot id"},
		{"no key", func(c *discoveryConfig) { c.Key = nil }, "cluster key"},
		{"short key", func(c *discoveryConfig) { c.Key = auth.Key("short") }, "cluster key"},
		{"no cluster", func(c *discoveryConfig) { c.Cluster = "" }, "cluster name"},
		{"long cluster", func(c *discoveryConfig) { c.Cluster = strings.Repeat("c", 201) }, "cluster name"},
		{"link port 0", func(c *discoveryConfig) { c.LinkPort = 0 }, "link port"},
		{"link port big", func(c *discoveryConfig) { c.LinkPort = 70000 }, "link port"},
		{"bind no port", func(c *discoveryConfig) { c.Bind = "127.0.0.1" }, "host:port"},
		{"bind hostname", func(c *discoveryConfig) { c.Bind = "localhost:0" }, "IP address"},
		{"bind unspecified", func(c *discoveryConfig) { c.Bind = "0.0.0.0:0" }, "advertise address"},
		{"bind empty host", func(c *discoveryConfig) { c.Bind = ":0" }, "advertise address"},
		{"bind v6 unspecified", func(c *discoveryConfig) { c.Bind = "[::]:0" }, "advertise address"},
		{"advertise unspecified", func(c *discoveryConfig) { c.Advertise = "0.0.0.0:7946" }, "concrete IP"},
		{"advertise port, bind 0", func(c *discoveryConfig) { c.Advertise = "127.0.0.1:7946" }, "bind port is 0"},
		{"profile", func(c *discoveryConfig) { c.Profile = 9 }, "gossip profile"},
		{"tags too big", func(c *discoveryConfig) {
			c.Tags = map[string]string{"k": strings.Repeat("v", 255), "l": strings.Repeat("w", 200)}
		}, "too large"},
	} {
		cfg := ok
		tc.edit(&cfg)
		d, err := startDiscovery(cfg, func(discoEvent) {})
		if err == nil {
			_ = d.shutdown()
			t.Errorf("%s: no error", tc.name)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %q does not mention %q", tc.name, err, tc.want)
		}
	}
	if _, err := startDiscovery(ok, nil); err == nil {
		t.Error("nil onEvent accepted")
	}
}

func TestDiscoAdvertise(t *testing.T) {
	t.Parallel()
	// Bind everything, advertise loopback: the others must see the
	// advertised address with the port that was bound.
	cfg := discoTestConfig(t, "wide", 5)
	cfg.Bind = "0.0.0.0:0"
	cfg.Advertise = "127.0.0.1"
	if _, err := startDiscovery(cfg, func(discoEvent) {}); err == nil || !strings.Contains(err.Error(), "host:port") {
		t.Fatalf("advertise without port: %v", err)
	}
	cfg.Advertise = "127.0.0.1:0"
	w, _ := discoStart(t, cfg)
	if ap := w.gossipAddr(); ap.Addr().String() != "127.0.0.1" || ap.Port() == 0 {
		t.Fatalf("gossipAddr = %v", ap)
	}
	a, recA := discoStart(t, discoTestConfig(t, "a", 1))
	discoJoinTo(t, a, w)
	discoWaitFor(t, "a to see w", func() bool {
		_, ok := recA.find(discoJoin, w.id)
		return ok
	})
	if got := discoMemberByID(a.members(), w.id).LinkAddr.String(); got != "127.0.0.1:5" {
		t.Errorf("LinkAddr of w = %s", got)
	}
}

func TestDiscoJoinContextAndShutdown(t *testing.T) {
	t.Parallel()
	a, _ := discoStart(t, discoTestConfig(t, "a", 1))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := a.join(ctx, []string{"127.0.0.1:1"}); !errors.Is(err, context.Canceled) {
		t.Errorf("join with a cancelled context: %v", err)
	}
	if n, err := a.join(context.Background(), nil); n != 0 || err != nil {
		t.Errorf("join of nothing: %d %v", n, err)
	}
	_, err := a.join(context.Background(), []string{"127.0.0.1:1"})
	if err == nil || !strings.Contains(err.Error(), "seeds run") {
		t.Errorf("join of a closed port: %v", err)
	}
	for range 2 {
		if err := a.shutdown(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.join(context.Background(), []string{"127.0.0.1:1"}); err == nil {
		t.Error("join after shutdown succeeded")
	}
	if err := a.setTags(nil); err == nil {
		t.Error("setTags after shutdown succeeded")
	}
}

func TestGossipKey(t *testing.T) {
	t.Parallel()
	k1 := gossipKey(discoTestKey, "test")
	if len(k1) != 32 {
		t.Fatalf("len %d", len(k1))
	}
	if !bytes.Equal(k1, gossipKey(discoTestKey, "test")) {
		t.Error("not deterministic")
	}
	if bytes.Equal(k1, gossipKey(discoTestKey, "test2")) {
		t.Error("cluster name not mixed in")
	}
	if bytes.Equal(k1, gossipKey(auth.Key(bytes.Repeat([]byte{0x5b}, 32)), "test")) {
		t.Error("key not mixed in")
	}
	if bytes.Equal(k1, discoTestKey) {
		t.Error("gossip key is the cluster key")
	}
}

func TestGossipProfileString(t *testing.T) {
	t.Parallel()
	for p, want := range map[GossipProfile]string{GossipLAN: "lan", GossipLocal: "local", GossipFast: "fast", 7: "GossipProfile(7)"} {
		if p.String() != want {
			t.Errorf("%d: %q", p, p.String())
		}
	}
	for _, p := range []GossipProfile{GossipLAN, GossipLocal, GossipFast} {
		c := memberlist.DefaultLANConfig()
		if err := p.apply(c); err != nil {
			t.Fatal(err)
		}
		if c.RetransmitMult < 4 || c.DeadNodeReclaimTime == 0 || c.PushPullInterval == 0 {
			t.Errorf("%v: RetransmitMult=%d DeadNodeReclaimTime=%v PushPullInterval=%v",
				p, c.RetransmitMult, c.DeadNodeReclaimTime, c.PushPullInterval)
		}
	}
}

func TestMetaRoundTrip(t *testing.T) {
	t.Parallel()
	for _, m := range []nodeMeta{
		{LinkPort: 1, Name: "a"},
		{LinkPort: 65535, Name: strings.Repeat("N", 64), Tags: map[string]string{"b": "2", "a": "", "ü": "ß"}},
	} {
		b, err := encodeMeta(m)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeMeta(b)
		if err != nil {
			t.Fatal(err)
		}
		if got.LinkPort != m.LinkPort || got.Name != m.Name || !maps.Equal(got.Tags, m.Tags) || got.Tags == nil {
			t.Errorf("round trip %+v -> %+v", m, got)
		}
		again, _ := encodeMeta(got)
		if !bytes.Equal(again, b) {
			t.Errorf("encoding not canonical: %x vs %x", again, b)
		}
	}
	b, _ := encodeMeta(nodeMeta{LinkPort: 0x1234, Name: "n", Tags: map[string]string{"k": "v"}})
	if want := []byte{1, 0x12, 0x34, 1, 'n', 0, 1, 1, 'k', 1, 'v'}; !bytes.Equal(b, want) {
		t.Errorf("encoding %x, want %x", b, want)
	}
}

func TestMetaLimit(t *testing.T) {
	t.Parallel()
	// header 6 + name 1 + one tag 2+k+v: exactly 400 bytes fits, 401 not.
	fits := nodeMeta{LinkPort: 1, Name: "n", Tags: map[string]string{"k": strings.Repeat("v", 255), "l": strings.Repeat("w", 400-7-2-1-255-2-1)}}
	b, err := encodeMeta(fits)
	if err != nil || len(b) != metaMaxLen {
		t.Fatalf("400-byte meta: len %d err %v", len(b), err)
	}
	fits.Tags["l"] += "w"
	if _, err := encodeMeta(fits); !errors.Is(err, errMetaTooLarge) {
		t.Errorf("401-byte meta: %v", err)
	}
	many := nodeMeta{LinkPort: 1, Name: "n", Tags: map[string]string{}}
	for i := range 1000 {
		many.Tags[fmt.Sprint(i)] = ""
	}
	if _, err := encodeMeta(many); !errors.Is(err, errMetaTooLarge) {
		t.Errorf("1000 tags: %v", err)
	}
	for _, bad := range []nodeMeta{
		{LinkPort: 0, Name: "n"},
		{LinkPort: 1, Name: ""},
		{LinkPort: 1, Name: "a#b"},
		{LinkPort: 1, Name: "n", Tags: map[string]string{"": "v"}},
		{LinkPort: 1, Name: "n", Tags: map[string]string{"k": "\xff"}},
		{LinkPort: 1, Name: "n", Tags: map[string]string{strings.Repeat("k", 256): ""}},
	} {
		if _, err := encodeMeta(bad); err == nil {
			t.Errorf("encodeMeta(%+v) accepted", bad)
		}
	}
}

func TestMetaDecodeErrors(t *testing.T) {
	t.Parallel()
	valid, _ := encodeMeta(nodeMeta{LinkPort: 9, Name: "node", Tags: map[string]string{"a": "1", "b": "2"}})
	for _, tc := range []struct {
		name string
		in   []byte
	}{
		{"nil", nil},
		{"version 0", []byte{0, 0, 9, 1, 'n', 0, 0}},
		{"version 2", []byte{2, 0, 9, 1, 'n', 0, 0}},
		{"only version", []byte{1}},
		{"half port", []byte{1, 0}},
		{"no name length", []byte{1, 0, 9}},
		{"name cut", []byte{1, 0, 9, 5, 'n'}},
		{"no tag count", []byte{1, 0, 9, 1, 'n'}},
		{"half tag count", []byte{1, 0, 9, 1, 'n', 0}},
		{"port 0", []byte{1, 0, 0, 1, 'n', 0, 0}},
		{"empty name", []byte{1, 0, 9, 0, 0, 0}},
		{"bad name", []byte{1, 0, 9, 1, '#', 0, 0}},
		{"tags missing", []byte{1, 0, 9, 1, 'n', 0, 1}},
		{"huge tag count", []byte{1, 0, 9, 1, 'n', 0xff, 0xff, 1, 'k', 0}},
		{"tag key cut", []byte{1, 0, 9, 1, 'n', 0, 1, 3, 'k'}},
		{"tag value length missing", []byte{1, 0, 9, 1, 'n', 0, 1, 1, 'k'}},
		{"tag value cut", []byte{1, 0, 9, 1, 'n', 0, 1, 1, 'k', 4, 'v'}},
		{"empty key", []byte{1, 0, 9, 1, 'n', 0, 1, 0, 0}},
		{"duplicate key", []byte{1, 0, 9, 1, 'n', 0, 2, 1, 'k', 0, 1, 'k', 0}},
		{"unsorted keys", []byte{1, 0, 9, 1, 'n', 0, 2, 1, 'l', 0, 1, 'k', 0}},
		{"invalid utf-8", []byte{1, 0, 9, 1, 'n', 0, 1, 1, 'k', 1, 0xff}},
		{"trailing byte", append(slices.Clone(valid), 0)},
		{"too long", append([]byte{1, 0, 9, 1, 'n', 0, 1, 1, 'k', 255}, make([]byte, 400)...)},
		{"every prefix is truncated", valid[:len(valid)-1]},
	} {
		if m, err := decodeMeta(tc.in); err == nil {
			t.Errorf("%s: decoded %+v", tc.name, m)
		}
	}
	for i := range len(valid) {
		if _, err := decodeMeta(valid[:i]); err == nil {
			t.Errorf("prefix of %d bytes decoded", i)
		}
	}
}

func FuzzDecodeMeta(f *testing.F) {
	for _, m := range []nodeMeta{
		{LinkPort: 1, Name: "a"},
		{LinkPort: 7946, Name: "node-1.x_y", Tags: map[string]string{"role": "db", "zone": "eu-1", "e": ""}},
	} {
		b, err := encodeMeta(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(b[:len(b)-1])
	}
	f.Add([]byte{})
	f.Add([]byte{1, 0xff, 0xff, 0xff})
	f.Add([]byte{1, 0, 9, 1, 'n', 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMeta(b)
		if err != nil {
			return
		}
		again, err := encodeMeta(m)
		if err != nil {
			t.Fatalf("decoded meta does not encode: %+v: %v", m, err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("re-encoding differs: %x vs %x", again, b)
		}
		m2, err := decodeMeta(again)
		if err != nil || m2.LinkPort != m.LinkPort || m2.Name != m.Name || !maps.Equal(m2.Tags, m.Tags) {
			t.Fatalf("second decode: %+v, %v; first %+v", m2, err, m)
		}
	})
}

// discoLogStore holds the records a discoLogRecorder and its derived
// handlers got.
type discoLogStore struct {
	mu      sync.Mutex
	records []slog.Record
}

// take returns the records so far and forgets them.
func (s *discoLogStore) take() []slog.Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.records
	s.records = nil
	return r
}

// discoLogRecorder is a slog.Handler that keeps every record, with the
// attributes of With added.
type discoLogRecorder struct {
	attrs []slog.Attr
	store *discoLogStore
}

// Enabled accepts every level.
func (h *discoLogRecorder) Enabled(context.Context, slog.Level) bool { return true }

// Handle stores r with h's attributes.
func (h *discoLogRecorder) Handle(_ context.Context, r slog.Record) error {
	r = r.Clone()
	r.AddAttrs(h.attrs...)
	h.store.mu.Lock()
	h.store.records = append(h.store.records, r)
	h.store.mu.Unlock()
	return nil
}

// WithAttrs returns a handler that adds as.
func (h *discoLogRecorder) WithAttrs(as []slog.Attr) slog.Handler {
	return &discoLogRecorder{attrs: append(slices.Clone(h.attrs), as...), store: h.store}
}

// WithGroup ignores groups, which discovery does not use.
func (h *discoLogRecorder) WithGroup(string) slog.Handler { return h }

// discoFuncName names the function of a record's PC.
func discoFuncName(pc uintptr) string {
	f, _ := runtime.CallersFrames([]uintptr{pc}).Next()
	return f.Function
}

func TestGossipLogBridge(t *testing.T) {
	t.Parallel()
	store := &discoLogStore{}
	ml := newMemberlistLogger(slog.New(&discoLogRecorder{store: store}))
	lines := []struct {
		in    string
		level slog.Level
		msg   string
	}{
		{"[DEBUG] memberlist: Stream connection from=127.0.0.1:1", slog.LevelDebug, "Stream connection from=127.0.0.1:1"},
		{"[INFO] memberlist: Suspect x has failed", slog.LevelInfo, "Suspect x has failed"},
		{"[WARN] memberlist: Was able to connect", slog.LevelWarn, "Was able to connect"},
		{"[ERR] memberlist: Decrypt packet failed", slog.LevelError, "Decrypt packet failed"},
		{"[ERROR] something", slog.LevelError, "something"},
		{"[ERR] Failed to shutdown transport: x", slog.LevelError, "Failed to shutdown transport: x"},
		{"no prefix at all", slog.LevelInfo, "no prefix at all"},
	}
	for _, l := range lines {
		ml.Print(l.in)
	}
	records := store.take()
	if len(records) != len(lines) {
		t.Fatalf("%d records for %d lines", len(records), len(lines))
	}
	for i, l := range lines {
		r := records[i]
		var component string
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "component" {
				component = a.Value.String()
			}
			return true
		})
		if r.Level != l.level || r.Message != l.msg || component != "memberlist" {
			t.Errorf("%q -> level %v msg %q component %q", l.in, r.Level, r.Message, component)
		}
		if fn := discoFuncName(r.PC); !strings.HasSuffix(fn, "TestGossipLogBridge") {
			t.Errorf("record source %q, want the caller of Print", fn)
		}
	}

	// A real discovery logs memberlist's lines through the bridge: here,
	// its complaint about a packet that is not sealed with our key.
	cfg := discoTestConfig(t, "logged", 1)
	cfg.Logger = slog.New(&discoLogRecorder{store: store})
	d, _ := discoStart(t, cfg)
	c, err := net.Dial("udp", d.gossipAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := c.Write([]byte("not a gossip packet")); err != nil {
			t.Fatal(err)
		}
		found := false
		for _, r := range store.take() {
			if r.Level == slog.LevelError && strings.HasPrefix(r.Message, "discarding packet with unacceptable label") {
				found = true
			}
		}
		if found {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no memberlist record from a real discovery")
		}
		time.Sleep(20 * time.Millisecond) // between probes of a condition with a deadline
	}
}

// A seed that is this node's own gossip address answers a join, but lets
// the node into nothing: Start must not report success.
func TestDiscoJoinSelf(t *testing.T) {
	d, _ := discoStart(t, discoTestConfig(t, "self", 1))
	ctx := testCtx(t, 10*time.Second)
	if _, err := d.join(ctx, []string{d.gossipAddr().String()}); err == nil || !strings.Contains(err.Error(), "own gossip address") {
		t.Fatalf("joining ourselves: %v", err)
	}
}

// Seeds and link addresses need a port: without one memberlist would try
// this node's own gossip port.
func TestStartRefusesAddressesWithoutPort(t *testing.T) {
	ctx := testCtx(t, 10*time.Second)
	for _, edit := range []func(*Config){
		func(c *Config) { c.Join = []string{"127.0.0.1"} },
		func(c *Config) { c.Join = []string{"127.0.0.1:0"} },
		func(c *Config) { c.Connect = []string{"127.0.0.1"} },
	} {
		c := testConfig("n0")
		edit(&c)
		if n, err := Start(ctx, c); err == nil || !strings.Contains(err.Error(), "want host:port") {
			if n != nil {
				n.Close()
			}
			t.Errorf("Join %v, Connect %v: %v", c.Join, c.Connect, err)
		}
	}
}
