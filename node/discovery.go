package node

import (
	"context"
	"crypto/hkdf"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/seed0811993b/conclave/auth"
)

// Discovery finds the other members of a cluster and notices when they go.
// It wraps hashicorp/memberlist, which is used for membership and failure
// detection only: messages travel over the authenticated links. All gossip
// is encrypted and authenticated with a key derived from the cluster key
// (gossipKey) and labelled with the cluster name, so that a process without
// the key, or with the key of another cluster, can neither join nor read nor
// inject gossip.

// memberInfo describes one cluster member as discovery sees it.
type memberInfo struct {
	ID       string         // memberlist node name: Name + "#" + Boot
	Name     string         // stable node name chosen by the user (from meta)
	Boot     string         // boot id: 16 lowercase hex chars, new on every Start
	LinkAddr netip.AddrPort // the member's gossip IP with the link port from its meta
	Tags     map[string]string
}

// discoEventKind says what happened to a member.
type discoEventKind uint8

const (
	// discoJoin: a member appeared (or came back after a leave).
	discoJoin discoEventKind = iota + 1
	// discoLeave: a member left gracefully or was declared dead; memberlist
	// cannot tell the two apart.
	discoLeave
	// discoUpdate: a known member changed its tags or addresses.
	discoUpdate
)

// String names the kind for logs and test failures.
func (k discoEventKind) String() string {
	switch k {
	case discoJoin:
		return "join"
	case discoLeave:
		return "leave"
	case discoUpdate:
		return "update"
	}
	return "discoEventKind(" + strconv.Itoa(int(k)) + ")"
}

// discoEvent is one membership change, delivered to onEvent in order.
type discoEvent struct {
	Kind   discoEventKind
	Member memberInfo
}

// discoveryConfig is what startDiscovery needs; the node layer fills it in
// from the user's options.
type discoveryConfig struct {
	Name, Boot string            // ID is Name+"#"+Boot
	Key        auth.Key          // the cluster key; only gossipKey(Key, Cluster) reaches memberlist
	Cluster    string            // cluster name, becomes the memberlist Label
	Bind       string            // "host:port" for gossip (UDP and TCP), port 0 = OS chooses
	Advertise  string            // "host:port" others reach us at; "" = the bound address
	LinkPort   int               // port of this process's link listener, published in meta
	Tags       map[string]string // published in meta
	Profile    GossipProfile
	Logger     *slog.Logger // nil = discard
}

// Limits of names and ids, checked by startDiscovery and on every member
// heard of.
const (
	discoMaxNameLen    = 64
	discoBootLen       = 16
	discoMaxClusterLen = 200
	// discoLabelPrefix versions the memberlist label, so that a future
	// incompatible gossip layout cannot mix with this one.
	discoLabelPrefix = "conclave/"
	// discoUpdateTimeout bounds how long setTags waits for its broadcast to
	// leave; the update stays queued (and push-pull repairs it) after that.
	discoUpdateTimeout = time.Second
)

// discovery is one process's membership in the gossip cluster. Its methods
// are safe for concurrent use; onEvent runs on a goroutine of its own and
// may call any method except shutdown.
type discovery struct {
	id, name, boot string
	log            *slog.Logger
	ml             *memberlist.Memberlist
	addr           netip.AddrPort // advertised gossip address, port resolved
	linkPort       uint16

	tagsMu sync.Mutex // serializes setTags: meta and incarnation stay in step
	metaMu sync.Mutex // guards meta and tags; held only briefly, NodeMeta takes it
	meta   []byte
	tags   map[string]string

	life   sync.RWMutex // closed and left: readers call memberlist, shutdown writes
	closed bool
	left   bool
	joins  sync.WaitGroup // join goroutines, waited for by shutdown

	// Event queue: memberlist callbacks append under qmu and poke wake; the
	// deliver goroutine drains it in order.
	onEvent func(discoEvent)
	memMu   sync.RWMutex          // guards known
	known   map[string]memberInfo // members announced by events, by ID
	qmu     sync.Mutex
	queue   []discoRawEvent
	wake    chan struct{} // capacity 1
	stop    chan struct{} // closed by shutdown
	done    chan struct{} // closed when deliver returns

	shutdownOnce sync.Once
	shutdownErr  error
}

// discoRawEvent is a memberlist notification copied out of memberlist's
// lock, decoded later on the deliver goroutine.
type discoRawEvent struct {
	kind discoEventKind
	node memberlist.Node
}

// discoDelegate implements memberlist's Delegate, EventDelegate and
// AliveDelegate for a discovery. Every method runs with memberlist's locks
// held: none calls memberlist, and none blocks.
type discoDelegate struct{ d *discovery }

// gossipKey derives the 32-byte AES-256-GCM key memberlist encrypts all
// gossip with: HKDF-SHA256 of the cluster key with the info "conclave/1
// gossip key" followed by the cluster name.
//
// The cluster key itself never goes to memberlist. Deriving a separate key
// keeps the two uses apart (domain separation): gossip ciphertexts can give
// no leverage against the link handshake, which uses the cluster key under
// other labels, and the gossip key, which memberlist keeps in memory in its
// keyring, does not reveal the cluster key. Mixing in the cluster name gives
// two clusters that share a key different gossip keys, on top of the label
// check.
func gossipKey(key auth.Key, cluster string) []byte {
	k, err := hkdf.Key(sha256.New, key, nil, "conclave/1 gossip key"+cluster, 32)
	if err != nil {
		// Only FIPS-only mode refuses: a key below 112 bits, which
		// startDiscovery never passes.
		panic("node: hkdf: " + err.Error())
	}
	return k
}

// discoCheckName validates a stable node name: 1..64 bytes of
// [A-Za-z0-9._-]. The set leaves out '#', which separates name and boot id
// in memberlist names, and anything a log or a shell would mangle.
func discoCheckName(name string) error {
	if name == "" || len(name) > discoMaxNameLen {
		return fmt.Errorf("node: node name %.80q must be 1 to %d characters", name, discoMaxNameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("node: node name %q may contain only letters, digits, '.', '_' and '-'", name)
		}
	}
	return nil
}

// discoCheckBoot validates a boot id: exactly 16 lowercase hex digits.
func discoCheckBoot(boot string) error {
	if len(boot) != discoBootLen {
		return fmt.Errorf("node: boot id %.40q must be %d lowercase hex digits", boot, discoBootLen)
	}
	for i := 0; i < len(boot); i++ {
		if c := boot[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return fmt.Errorf("node: boot id %q must be %d lowercase hex digits", boot, discoBootLen)
		}
	}
	return nil
}

// discoParseAddr parses "host:port" where host must be an IP literal (or
// empty, meaning the unspecified IPv4 address). memberlist itself would
// silently bind every interface for a host name it cannot parse.
func discoParseAddr(what, s string) (netip.AddrPort, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("node: %s address %q: want host:port: %w", what, s, err)
	}
	var ip netip.Addr
	if host == "" {
		ip = netip.IPv4Unspecified()
	} else if ip, err = netip.ParseAddr(host); err != nil || ip.Zone() != "" {
		return netip.AddrPort{}, fmt.Errorf("node: %s address %q: host must be an IP address without zone", what, s)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("node: %s address %q: bad port", what, s)
	}
	return netip.AddrPortFrom(ip.Unmap(), uint16(p)), nil
}

// startDiscovery validates cfg, starts memberlist (bound and listening, but
// not yet joined to anyone) and the goroutine that delivers events to
// onEvent. onEvent is never called for this process itself.
func startDiscovery(cfg discoveryConfig, onEvent func(discoEvent)) (*discovery, error) {
	if onEvent == nil {
		return nil, errors.New("node: discovery needs an event callback")
	}
	if err := discoCheckName(cfg.Name); err != nil {
		return nil, err
	}
	if err := discoCheckBoot(cfg.Boot); err != nil {
		return nil, err
	}
	if len(cfg.Key) < auth.MinKeyLen {
		return nil, fmt.Errorf("%w: gossip needs a cluster key of at least %d bytes", auth.ErrBadKey, auth.MinKeyLen)
	}
	if cfg.Cluster == "" || len(cfg.Cluster) > discoMaxClusterLen {
		return nil, fmt.Errorf("node: cluster name %.40q must be 1 to %d bytes", cfg.Cluster, discoMaxClusterLen)
	}
	if cfg.LinkPort < 1 || cfg.LinkPort > 65535 {
		return nil, fmt.Errorf("node: link port %d out of range 1..65535", cfg.LinkPort)
	}
	bind, err := discoParseAddr("gossip bind", cfg.Bind)
	if err != nil {
		return nil, err
	}
	adv := netip.AddrPortFrom(bind.Addr(), 0)
	if cfg.Advertise != "" {
		if adv, err = discoParseAddr("gossip advertise", cfg.Advertise); err != nil {
			return nil, err
		}
	}
	switch {
	case adv.Addr().IsUnspecified() && cfg.Advertise == "":
		return nil, fmt.Errorf("node: gossip bind address %s is unspecified: set an advertise address other members can reach", cfg.Bind)
	case adv.Addr().IsUnspecified():
		return nil, fmt.Errorf("node: gossip advertise address %s must be a concrete IP address", cfg.Advertise)
	case adv.Port() != 0 && bind.Port() == 0:
		// memberlist overwrites the advertised port with the chosen one.
		return nil, fmt.Errorf("node: gossip advertise address %s has a port but bind port is 0: bind a fixed port to advertise another", cfg.Advertise)
	}

	d := &discovery{
		id:       cfg.Name + "#" + cfg.Boot,
		name:     cfg.Name,
		boot:     cfg.Boot,
		log:      cfg.Logger,
		linkPort: uint16(cfg.LinkPort),
		tags:     maps.Clone(cfg.Tags),
		onEvent:  onEvent,
		known:    make(map[string]memberInfo),
		wake:     make(chan struct{}, 1),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	if d.meta, err = encodeMeta(nodeMeta{LinkPort: d.linkPort, Name: d.name, Tags: d.tags}); err != nil {
		return nil, err
	}

	c := memberlist.DefaultLANConfig()
	if err := cfg.Profile.apply(c); err != nil {
		return nil, err
	}
	c.Name = d.id
	c.BindAddr = bind.Addr().String()
	c.BindPort = int(bind.Port())
	c.AdvertiseAddr = adv.Addr().String()
	c.AdvertisePort = int(adv.Port())
	if adv.Port() == 0 {
		c.AdvertisePort = int(bind.Port()) // filled in below when that is 0 too
	}
	c.SecretKey = gossipKey(cfg.Key, cfg.Cluster)
	c.Label = discoLabelPrefix + cfg.Cluster
	c.GossipVerifyIncoming = true // drop anything not sealed with our key
	c.GossipVerifyOutgoing = true
	dd := &discoDelegate{d: d}
	c.Delegate = dd
	c.Events = dd
	c.Alive = dd
	c.Logger = newMemberlistLogger(d.log)
	tr, err := newGuardedTransport(c.BindAddr, c.BindPort, c.Logger, c.TCPTimeout/4)
	if err != nil {
		return nil, fmt.Errorf("node: start gossip on %s: %w", cfg.Bind, err)
	}
	if c.BindPort == 0 {
		c.BindPort = tr.Port()
		c.AdvertisePort = c.BindPort
	}
	c.Transport = tr

	// c.SecretKey must not be cleared afterwards: memberlist's keyring keeps
	// that very slice, not a copy.
	ml, err := memberlist.Create(c)
	if err != nil {
		_ = tr.Shutdown()
		return nil, fmt.Errorf("node: start gossip on %s: %w", cfg.Bind, err)
	}
	d.ml = ml
	// c holds the port bound. LocalNode() has it too,
	// but its fields are rewritten under memberlist's lock whenever we refute
	// a suspicion, so reading them here would race.
	d.addr = netip.AddrPortFrom(adv.Addr(), uint16(c.AdvertisePort))
	go d.deliver()
	d.log.Debug("gossip started", "id", d.id, "addr", d.addr, "cluster", cfg.Cluster, "profile", cfg.Profile)
	return d, nil
}

// join contacts the given gossip addresses ("host:port", tried in order)
// and merges state with each one that answers. It returns how many
// answered; an error only when none did. Cancelling ctx makes join return
// at once, but an exchange already under way finishes in the background
// (bounded by the profile's TCP timeout); shutdown waits for it.
func (d *discovery) join(ctx context.Context, addrs []string) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("node: join gossip: %w", err)
	}
	if len(addrs) == 0 {
		return 0, nil
	}
	addrs = slices.Clone(addrs)
	d.life.RLock()
	if d.closed {
		d.life.RUnlock()
		return 0, errors.New("node: join gossip after shutdown")
	}
	d.joins.Add(1)
	d.life.RUnlock()

	type result struct {
		n    int
		errs []string
	}
	ch := make(chan result, 1)
	go func() {
		defer d.joins.Done()
		var r result
		for _, a := range addrs {
			if ctx.Err() != nil || d.isClosed() {
				break
			}
			n, err := d.ml.Join([]string{a})
			if n > 0 && d.ml.NumMembers() == 1 {
				// It answered, and knows no one but us: it is us.
				n, err = 0, errors.New("that is this node's own gossip address")
			}
			r.n += n
			if err != nil {
				r.errs = append(r.errs, discoJoinError(a, err))
			}
		}
		ch <- r
	}()
	select {
	case <-ctx.Done():
		return 0, fmt.Errorf("node: join gossip at %v: %w", addrs, ctx.Err())
	case r := <-ch:
		switch {
		case r.n > 0:
			return r.n, nil
		case len(r.errs) == 0: // stopped by ctx or shutdown before any attempt
			if err := ctx.Err(); err != nil {
				return 0, fmt.Errorf("node: join gossip at %v: %w", addrs, err)
			}
			return 0, errors.New("node: join gossip after shutdown")
		}
		return 0, fmt.Errorf("node: join gossip at %v: no seed let us in: %s%s",
			addrs, strings.Join(r.errs, "; "), discoJoinHint(r.errs))
	}
}

// discoJoinError turns memberlist's error for one seed (a multierror
// printed over several lines, "failed to join ADDR: REASON") into one line,
// "ADDR: REASON". memberlist formats its causes with %v, so there is no
// error value worth wrapping.
func discoJoinError(addr string, err error) string {
	if m, ok := err.(interface{ WrappedErrors() []error }); ok && len(m.WrappedErrors()) == 1 {
		err = m.WrappedErrors()[0]
	}
	msg := strings.TrimPrefix(err.Error(), "failed to join ")
	if !strings.HasPrefix(msg, addr+": ") {
		msg = addr + ": " + msg
	}
	return msg
}

// discoJoinHint explains the likely cause behind memberlist's join errors,
// as measured with memberlist v0.7.0: a seed with another cluster key
// cannot decrypt our push-pull and answers with an error sealed under its
// own key, which we fail to decrypt ("no installed keys could decrypt the
// message"); a seed with another cluster name drops the stream at the label
// check without a word (EOF, or a reset).
func discoJoinHint(errs []string) string {
	var key, name, down bool
	for _, s := range errs {
		switch {
		case strings.Contains(s, "decrypt"):
			key = true
		case strings.Contains(s, "EOF"), strings.Contains(s, "connection reset"):
			name = true
		case strings.Contains(s, "connection refused"), strings.Contains(s, "timeout"),
			strings.Contains(s, "no route to host"), strings.Contains(s, "failed to resolve"):
			down = true
		}
	}
	var hints []string
	if key {
		hints = append(hints, "a seed we cannot decrypt holds a different cluster key")
	}
	if name {
		hints = append(hints, "a seed that hangs up at once most likely has a different cluster name, or key")
	}
	if down {
		hints = append(hints, "check that the seeds run and that their gossip host:port is right")
	}
	if len(hints) == 0 {
		return ""
	}
	return " (" + strings.Join(hints, "; ") + ")"
}

// members returns the members announced by join events and not yet gone,
// without this process, sorted by ID. It reads discovery's own table rather
// than memberlist.Members(), whose nodes memberlist keeps rewriting after
// returning them; inside onEvent it already includes the event's change.
func (d *discovery) members() []memberInfo {
	d.memMu.RLock()
	out := make([]memberInfo, 0, len(d.known))
	for _, m := range d.known {
		m.Tags = maps.Clone(m.Tags)
		out = append(out, m)
	}
	d.memMu.RUnlock()
	slices.SortFunc(out, func(a, b memberInfo) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// others is how many other members memberlist knows of, live or suspect,
// including those whose join event has not reached onEvent yet.
func (d *discovery) others() int { return d.ml.NumMembers() - 1 }

// local describes this process as the others see it.
func (d *discovery) local() memberInfo {
	d.metaMu.Lock()
	tags := maps.Clone(d.tags)
	d.metaMu.Unlock()
	if tags == nil {
		tags = map[string]string{}
	}
	return memberInfo{
		ID:       d.id,
		Name:     d.name,
		Boot:     d.boot,
		LinkAddr: netip.AddrPortFrom(d.addr.Addr(), d.linkPort),
		Tags:     tags,
	}
}

// gossipAddr is the advertised gossip address, with the real port when the
// configured one was 0.
func (d *discovery) gossipAddr() netip.AddrPort { return d.addr }

// setTags replaces this process's tags and broadcasts the new meta. It
// fails, changing nothing, when the meta would exceed its size limit, and
// after leave or shutdown. It waits up to a second for the broadcast to go
// out; an update still queued after that spreads later.
func (d *discovery) setTags(tags map[string]string) error {
	tags = maps.Clone(tags)
	meta, err := encodeMeta(nodeMeta{LinkPort: d.linkPort, Name: d.name, Tags: tags})
	if err != nil {
		return err
	}
	d.tagsMu.Lock()
	defer d.tagsMu.Unlock()
	d.life.RLock()
	defer d.life.RUnlock()
	switch {
	case d.closed:
		return errors.New("node: set tags after shutdown")
	case d.left:
		return errors.New("node: set tags after leave")
	}
	d.metaMu.Lock()
	d.meta, d.tags = meta, tags
	d.metaMu.Unlock()
	if err := d.ml.UpdateNode(discoUpdateTimeout); err != nil {
		d.log.Debug("tag update not yet broadcast", "err", err)
	}
	return nil
}

// leave tells the cluster that this process is going away and waits up to
// timeout for that to be broadcast. Gossip keeps running until shutdown.
func (d *discovery) leave(timeout time.Duration) error {
	d.life.Lock() // excludes setTags, which would wait in vain after a leave
	defer d.life.Unlock()
	if d.closed {
		return errors.New("node: leave gossip after shutdown")
	}
	d.left = true
	if err := d.ml.Leave(timeout); err != nil {
		return fmt.Errorf("node: leave gossip: %w", err)
	}
	return nil
}

// shutdown stops gossip without a goodbye (call leave first for that), then
// stops the event goroutine and waits for it and for background joins (a
// join stuck on an unresponsive seed holds it up to the profile's TCP
// timeout). Events still queued are dropped. It is idempotent. It must not
// be called from onEvent, which it waits for.
func (d *discovery) shutdown() error {
	d.shutdownOnce.Do(func() {
		d.life.Lock()
		d.closed = true
		d.life.Unlock()
		if err := d.ml.Shutdown(); err != nil {
			d.shutdownErr = fmt.Errorf("node: shut down gossip: %w", err)
		}
		close(d.stop)
		<-d.done
		d.joins.Wait()
		d.memMu.Lock()
		clear(d.known) // members() reports nobody once gossip is off
		d.memMu.Unlock()
	})
	return d.shutdownErr
}

// isClosed reports whether shutdown has begun.
func (d *discovery) isClosed() bool {
	d.life.RLock()
	defer d.life.RUnlock()
	return d.closed
}

// enqueue records a memberlist notification for the deliver goroutine. It
// runs under memberlist's lock and never blocks.
func (d *discovery) enqueue(kind discoEventKind, n *memberlist.Node) {
	if n.Name == d.id {
		return
	}
	e := discoRawEvent{kind: kind, node: *n}
	e.node.Addr = slices.Clone(n.Addr)
	e.node.Meta = slices.Clone(n.Meta)
	d.qmu.Lock()
	d.queue = append(d.queue, e)
	d.qmu.Unlock()
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// deliver is the one goroutine that calls onEvent, in the order memberlist
// reported the changes.
func (d *discovery) deliver() {
	defer close(d.done)
	for {
		select {
		case <-d.stop:
			return
		case <-d.wake:
		}
		for {
			d.qmu.Lock()
			batch := d.queue
			d.queue = nil
			d.qmu.Unlock()
			if len(batch) == 0 {
				break
			}
			for _, e := range batch {
				select {
				case <-d.stop:
					return
				default:
				}
				if ev, ok := d.apply(e); ok {
					d.onEvent(ev)
				}
			}
		}
	}
}

// apply updates the member table with one raw notification and returns the
// event to deliver, if any. Every leave follows a join, a member whose meta
// stops decoding leaves, and an update of an unknown member is a join.
func (d *discovery) apply(e discoRawEvent) (discoEvent, bool) {
	d.memMu.Lock()
	defer d.memMu.Unlock()
	old, wasKnown := d.known[e.node.Name]
	if e.kind == discoLeave {
		if !wasKnown {
			return discoEvent{}, false
		}
		delete(d.known, e.node.Name)
		return discoEvent{Kind: discoLeave, Member: old}, true
	}
	m, err := discoMember(&e.node)
	if err != nil {
		d.log.Warn("ignoring gossip member", "member", e.node.Name, "addr", net.IP(e.node.Addr).String(), "err", err)
		if !wasKnown {
			return discoEvent{}, false
		}
		delete(d.known, e.node.Name)
		return discoEvent{Kind: discoLeave, Member: old}, true
	}
	d.known[m.ID] = m
	kind := discoJoin
	if wasKnown {
		kind = discoUpdate
	}
	m.Tags = maps.Clone(m.Tags) // the table keeps its own copy
	return discoEvent{Kind: kind, Member: m}, true
}

// discoMember checks a memberlist node against the rules every conclave
// member follows and converts it. Anyone holding the key can gossip
// anything, so nothing is trusted: the memberlist name must be a valid
// name, '#', a valid boot id, and the name must match the one in the meta.
func discoMember(n *memberlist.Node) (memberInfo, error) {
	name, boot, ok := strings.Cut(n.Name, "#")
	if !ok {
		return memberInfo{}, fmt.Errorf("node: member name %.80q has no boot id", n.Name)
	}
	if err := discoCheckName(name); err != nil {
		return memberInfo{}, err
	}
	if err := discoCheckBoot(boot); err != nil {
		return memberInfo{}, err
	}
	meta, err := decodeMeta(n.Meta)
	if err != nil {
		return memberInfo{}, err
	}
	if meta.Name != name {
		return memberInfo{}, fmt.Errorf("node: member %q claims the name %q in its meta", n.Name, meta.Name)
	}
	ip, ok := netip.AddrFromSlice(n.Addr)
	if !ok || ip.Unmap().IsUnspecified() {
		return memberInfo{}, fmt.Errorf("node: member %q has no usable address", n.Name)
	}
	return memberInfo{
		ID:       n.Name,
		Name:     name,
		Boot:     boot,
		LinkAddr: netip.AddrPortFrom(ip.Unmap(), meta.LinkPort),
		Tags:     meta.Tags,
	}, nil
}

// NodeMeta returns the current meta blob. Its size was checked when it was
// encoded, far below limit (memberlist panics above it).
func (dd *discoDelegate) NodeMeta(limit int) []byte {
	dd.d.metaMu.Lock()
	defer dd.d.metaMu.Unlock()
	if len(dd.d.meta) > limit {
		return nil // cannot happen: metaMaxLen < memberlist.MetaMaxSize
	}
	return dd.d.meta
}

// NotifyMsg ignores user messages: messages travel over the links.
func (*discoDelegate) NotifyMsg([]byte) {}

// GetBroadcasts has nothing to add to gossip.
func (*discoDelegate) GetBroadcasts(int, int) [][]byte { return nil }

// LocalState has no state beyond memberlist's own to exchange.
func (*discoDelegate) LocalState(bool) []byte { return nil }

// MergeRemoteState ignores remote state: there is none to merge.
func (*discoDelegate) MergeRemoteState([]byte, bool) {}

// NotifyJoin queues a join.
func (dd *discoDelegate) NotifyJoin(n *memberlist.Node) { dd.d.enqueue(discoJoin, n) }

// NotifyLeave queues a leave (graceful or dead, memberlist does not say).
func (dd *discoDelegate) NotifyLeave(n *memberlist.Node) { dd.d.enqueue(discoLeave, n) }

// NotifyUpdate queues an update.
func (dd *discoDelegate) NotifyUpdate(n *memberlist.Node) { dd.d.enqueue(discoUpdate, n) }

// NotifyAlive keeps members that break the naming or meta rules out of
// memberlist's member list altogether, so they are neither probed nor
// listed; memberlist logs the returned error at warn.
func (dd *discoDelegate) NotifyAlive(n *memberlist.Node) error {
	if n.Name == dd.d.id {
		return nil
	}
	_, err := discoMember(n)
	return err
}
