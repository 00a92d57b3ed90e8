package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/seed0811993b/conclave/auth"
	"github.com/seed0811993b/conclave/transport"
)

// Node is one process's membership in a cluster: it gossips with the other
// members, keeps one authenticated link to each, and delivers messages
// between its handlers and theirs. All methods are safe for concurrent use.
type Node struct {
	cfg      Config
	id, boot string
	log      *slog.Logger
	dialer   *transport.Dialer
	ln       *transport.Listener
	disco    *discovery
	linkPort int

	ctx    context.Context // ends when the node closes
	cancel context.CancelFunc
	done   <-chan struct{}
	wg     sync.WaitGroup

	// claimMu orders user logins' claims on member IDs (claim.go) with the
	// creation and binding of their peers; it guards claims.
	claimMu sync.Mutex
	claims  map[string]claim // by name

	mu       sync.Mutex
	byID     map[string]*peer
	byName   map[string]*peer                 // the newest live incarnation of each name
	names    atomic.Pointer[map[string]*peer] // a copy of byName for lock-free lookups
	leaving  atomic.Bool                      // Leave or Close began: no new sends
	changeCh chan struct{}                    // closed and replaced when peers change

	local  localTable // this node's handlers and subscriptions
	routes routeTable // what the other members want

	selfIdentity atomic.Pointer[identity] // a client's user, as members told it

	reqID       atomic.Uint64
	undelivered atomic.Uint64
	reqSem      chan struct{}
	reqWork     chan request // to an idle request worker (see startRequest)
	self        *inbox

	events    eventQueue
	closeOnce sync.Once
}

// Start starts a node: it opens the link listener, starts gossip and joins
// cfg.Join. ctx bounds the join; the node itself runs until Close. A
// member that logs in as a user (cfg.User) also waits until a member takes
// its login (at most 10 s), and fails if they all refuse it.
func Start(ctx context.Context, cfg Config) (*Node, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := checkOwnLogin(cfg); err != nil {
		return nil, err
	}
	var b [8]byte
	rand.Read(b[:])
	n := &Node{
		cfg:      cfg,
		boot:     hex.EncodeToString(b[:]),
		byID:     make(map[string]*peer),
		byName:   make(map[string]*peer),
		claims:   make(map[string]claim),
		changeCh: make(chan struct{}),
		reqSem:   make(chan struct{}, cfg.MaxRequests),
		reqWork:  make(chan request),
		self:     newInbox(cfg.InboxBytes),
	}
	n.id = cfg.Name + "#" + n.boot
	n.publishNames()
	n.log = cfg.Logger.With("node", n.id)
	n.local.init()
	n.routes.init()
	n.events.init(n)
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.done = n.ctx.Done()

	tcfg := &transport.Config{
		Auth: &auth.Config{
			Key: cfg.Key, Name: n.id, MaxFrameSize: cfg.MaxFrameSize, Logger: n.log,
			User: cfg.User, Password: cfg.Password, Users: cfg.Users, Require: cfg.Require,
			Authorize: n.authorize,
		},
		// Room for the whole resend backlog plus control frames, so that
		// handing a sequenced frame to the link never waits: the per-peer
		// queue above is where senders wait.
		SendQueueBytes: cfg.SendQueueBytes + 256<<10,
		Logger:         n.log,
	}
	n.dialer = &transport.Dialer{NetDialer: cfg.NetDialer, Config: tcfg}

	linkBind := cfg.LinkBind
	if linkBind == "" {
		host, _, err := net.SplitHostPort(cfg.Bind)
		if err != nil {
			return nil, fmt.Errorf("node: Config.Bind %q: %w", cfg.Bind, err)
		}
		linkBind = net.JoinHostPort(host, "0")
	}
	inner, err := net.Listen("tcp", linkBind)
	if err != nil {
		return nil, fmt.Errorf("node: link listener: %w", err)
	}
	n.linkPort = inner.Addr().(*net.TCPAddr).Port
	if cfg.LinkAdvertise != "" {
		_, port, err := net.SplitHostPort(cfg.LinkAdvertise)
		if err != nil {
			inner.Close()
			return nil, fmt.Errorf("node: Config.LinkAdvertise %q: %w", cfg.LinkAdvertise, err)
		}
		if n.linkPort, err = strconv.Atoi(port); err != nil {
			inner.Close()
			return nil, fmt.Errorf("node: Config.LinkAdvertise %q: bad port", cfg.LinkAdvertise)
		}
	}
	if n.ln, err = transport.NewListener(inner, tcfg); err != nil {
		inner.Close()
		return nil, err
	}

	n.wg.Add(4)
	go func() { defer n.wg.Done(); n.events.run() }()
	go func() { defer n.wg.Done(); n.acceptLoop() }()
	go func() { defer n.wg.Done(); n.heartbeat() }()
	go func() { defer n.wg.Done(); n.self.run(n.ctx, n.deliver) }()

	if len(cfg.Connect) > 0 {
		// A client: no gossip, links to the given members.
		for _, addr := range cfg.Connect {
			if err := n.connect(ctx, addr); err != nil {
				n.shutdown()
				return nil, err
			}
		}
		n.log.Info("client started", "link", n.ln.Addr().String(), "connected", cfg.Connect)
		return n, nil
	}
	n.disco, err = startDiscovery(discoveryConfig{
		Name: cfg.Name, Boot: n.boot, Key: cfg.Key, Cluster: cfg.Cluster,
		Bind: cfg.Bind, Advertise: cfg.Advertise, LinkPort: n.linkPort,
		Tags: cfg.Tags, Profile: cfg.Gossip, Logger: n.log,
	}, n.onDisco)
	if err != nil {
		n.shutdown()
		return nil, err
	}
	if len(cfg.Join) > 0 {
		if _, err := n.disco.join(ctx, cfg.Join); err != nil {
			n.shutdown()
			return nil, err
		}
		if cfg.User != "" {
			if err := n.awaitLogin(ctx); err != nil {
				n.shutdown()
				return nil, err
			}
		}
	}
	n.log.Info("node started", "gossip", n.GossipAddr(), "link", n.ln.Addr().String())
	return n, nil
}

// connect dials a member's link address for a client node and adopts the
// link, so that Start fails on a wrong key or password.
func (n *Node) connect(ctx context.Context, addr string) error {
	aps, err := resolveAddrPorts(ctx, addr)
	if err != nil {
		return fmt.Errorf("node: Config.Connect %q: %w", addr, err)
	}
	var tl *transport.Link
	var ap netip.AddrPort
	for _, ap = range aps {
		// The next address only when this one could not be reached: a
		// refused login would be refused there too.
		var op *net.OpError
		if tl, err = n.dialer.Dial(ctx, "tcp", ap.String()); !errors.As(err, &op) || op.Op != "dial" || ctx.Err() != nil {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("node: connect %s: %w", addr, err)
	}
	id := tl.ConnectionState().PeerName
	name, boot, ok := splitID(id)
	if !ok || id == n.id {
		tl.Close()
		return fmt.Errorf("node: connect %s: the peer calls itself %q, not a member ID", addr, id)
	}
	p := n.peerUp(id, name, boot, ap, nil, true, nil)
	if p == nil {
		tl.Close()
		return ErrClosed
	}
	p.attach(tl, n.id)
	return nil
}

// resolveAddrPorts parses host:port, looking the host up when it is a
// name: a connect tries each address in turn, as net.Dial does.
func resolveAddrPorts(ctx context.Context, addr string) ([]netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(addr); err == nil {
		return []netip.AddrPort{ap}, nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("want host:port: %w", err)
	}
	pn, err := strconv.ParseUint(port, 10, 16)
	if err != nil || pn == 0 {
		return nil, fmt.Errorf("want host:port with a port number, got %q", port)
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, err
	}
	aps := make([]netip.AddrPort, 0, len(ips))
	for _, ip := range ips {
		aps = append(aps, netip.AddrPortFrom(ip.Unmap(), uint16(pn)))
	}
	return aps, nil
}

// Name returns the node's stable name.
func (n *Node) Name() string { return n.cfg.Name }

// ID returns the node's member ID: its name and this process's boot id.
func (n *Node) ID() string { return n.id }

// GossipAddr returns the gossip address others pass in Config.Join.
// A client (Config.Connect) has none: "".
func (n *Node) GossipAddr() string {
	if n.disco == nil {
		return ""
	}
	return n.disco.gossipAddr().String()
}

// LinkAddr returns the address of the node's link listener.
func (n *Node) LinkAddr() string { return n.ln.Addr().String() }

// acceptLoop adopts every authenticated incoming link.
func (n *Node) acceptLoop() {
	for {
		tl, err := n.ln.Accept(n.ctx)
		if err != nil {
			return
		}
		id := tl.ConnectionState().PeerName
		if _, _, ok := splitID(id); !ok || id == n.id {
			n.log.Warn("refusing a link with a bad member ID", "peer", id, "remote", tl.RemoteAddr().String())
			tl.Close()
			continue
		}
		p := n.adopt(tl.ConnectionState())
		if p == nil {
			tl.Close()
			continue
		}
		p.attach(tl, id)
	}
}

// adopt finds or creates the peer an authenticated incoming link speaks
// for and binds it to the link's user login, or returns nil when the node
// is closing or the login may not take that peer (what changed since the
// handshake's own check: gossip learned of it, or another link claimed it).
func (n *Node) adopt(st auth.ConnectionState) *peer {
	n.claimMu.Lock()
	defer n.claimMu.Unlock()
	defer n.dropClaim(st)
	if err := n.loginErr(st); err != nil {
		n.log.Warn("refusing a link", "peer", st.PeerName, "user", st.PeerUser, "why", err)
		return nil
	}
	var ident *identity
	if st.PeerUser != "" {
		ident = n.loggedIn(st)
	}
	name, boot, _ := splitID(st.PeerName)
	p := n.peerUp(st.PeerName, name, boot, netip.AddrPort{}, nil, false, ident)
	if p == nil {
		return nil
	}
	if n.cfg.User != "" && len(n.cfg.Connect) == 0 {
		// Only the dialler logs in: tell it which user we are, so that
		// no other user can take our place there (claim.go).
		p.sendControl(ctlIam, marshalControl(&iam{User: n.cfg.User}))
	}
	if ident == nil {
		return p
	}
	// A new peer holds ident already; either way the peer hears who it is.
	if old := p.ident.Swap(ident); old == ident || !old.same(ident) {
		p.sendControl(ctlWhoami, ident.whoami())
	}
	return p
}

// forgetLocked drops p from the node's tables and stops its inbox: a
// tombstone that expired, or an impostor replaced. Callers hold n.mu.
func (n *Node) forgetLocked(p *peer) {
	delete(n.byID, p.id)
	if n.byName[p.name] == p {
		delete(n.byName, p.name)
		n.publishNames()
	}
	p.stopInbox()
}

// splitID splits a member ID into its stable name and boot id.
func splitID(id string) (name, boot string, ok bool) {
	name, boot, ok = strings.Cut(id, "#")
	if !ok || discoCheckName(name) != nil || len(boot) != 16 {
		return "", "", false
	}
	if _, err := hex.DecodeString(boot); err != nil {
		return "", "", false
	}
	return name, boot, true
}

// onDisco handles membership changes; discovery calls it from one
// goroutine, outside memberlist's locks.
func (n *Node) onDisco(ev discoEvent) {
	m := ev.Member
	switch ev.Kind {
	case discoJoin, discoUpdate:
		n.claimMu.Lock()
		defer n.claimMu.Unlock()
		n.replaceImpostor(m.ID)
		if n.refuseAsMember(m.ID) {
			return
		}
		p := n.peerUp(m.ID, m.Name, m.Boot, m.LinkAddr, m.Tags, true, nil)
		if p != nil {
			p.gossipDead.Store(false)
			p.inGossip.Store(true)
		}
		if p != nil && ev.Kind == discoUpdate {
			n.emit(Event{Kind: EventUpdated, Member: p.member()})
		}
	case discoLeave:
		n.mu.Lock()
		p := n.byID[m.ID]
		n.mu.Unlock()
		if p == nil {
			return
		}
		if l := p.readyLink(); l != nil && l.heardWithin(n.cfg.HeartbeatTimeout) {
			// The link heard from it moments ago: gossip's probes
			// (UDP, short timeouts) misjudged a busy process. The link
			// decides: if it breaks or falls silent, the peer fails then.
			p.gossipDead.Store(true)
			n.log.Info("gossip declared a peer dead that its link still hears; trusting the link", "peer", p.id)
			return
		}
		n.peerDown(p, stateFailed, ErrPeerFailed, "gossip declared it dead")
	}
}

// peerUp finds or creates the peer for a member ID and makes sure it is
// alive, emitting EventJoined when it becomes so. fromGossip says whether
// addr and tags are authoritative. ident is the user a new peer logged in
// as, nil for a member. It returns nil while the node is closing.
func (n *Node) peerUp(id, name, boot string, addr netip.AddrPort, tags map[string]string, fromGossip bool, ident *identity) *peer {
	// A new session starts with a snapshot of our interests, and no
	// subscription may change between the peer's creation and that
	// snapshot: see register.
	n.routes.order.Lock()
	n.mu.Lock()
	if n.ctx.Err() != nil {
		n.mu.Unlock()
		n.routes.order.Unlock()
		return nil
	}
	p := n.byID[id]
	created := p == nil
	if created {
		p = newPeer(n, id, name, boot)
		if ident != nil {
			p.ident.Store(ident)
		}
		n.byID[id] = p
		n.wg.Add(1)
		ctx, stop := context.WithCancel(n.ctx)
		p.stopInbox = func() { stop(); p.inbox.forget() }
		go func() { defer n.wg.Done(); p.inbox.run(ctx, n.deliver) }()
	}
	p.mu.Lock()
	if fromGossip {
		p.addr, p.tags = addr, tags
	}
	dead := p.state != stateAlive
	p.mu.Unlock()
	revived := !created && dead && p.revive()
	var old *peer
	if created || revived {
		old = n.byName[name]
		n.byName[name] = p
		n.publishNames()
	}
	n.mu.Unlock()
	if created || revived {
		n.sendSnapshotLocked(p)
	}
	n.routes.order.Unlock()
	if dead && !revived {
		return nil // left, or replaced by a restart: stale news
	}

	if old != nil && old != p {
		n.peerDown(old, stateFailed, ErrPeerRestarted, "it came back as "+id)
	}
	if revived {
		// We forgot its interests when we declared it failed; it does not
		// know that unless it declared us failed too.
		n.requestResync(p)
	}
	if created || revived {
		n.emit(Event{Kind: EventJoined, Member: p.member()})
		n.changed()
	}
	var delay time.Duration
	if n.id > id {
		// Both sides dial a new member; the lower ID's link wins a tie, so
		// the higher side waits a moment to save a handshake.
		delay = 100*time.Millisecond + time.Duration(mrand.IntN(100))*time.Millisecond
	}
	n.dial(p, delay)
	return p
}

// peerDown ends a peer incarnation and tells the user.
func (n *Node) peerDown(p *peer, state peerState, err error, reason string) {
	if !p.end(state, err, reason) {
		return
	}
	n.dropInterests(p)
	kind := EventFailed
	if state == stateLeft {
		kind = EventLeft
	}
	n.log.Info("peer "+kind.String(), "peer", p.id, "reason", reason)
	n.emit(Event{Kind: kind, Member: p.member(), Err: &PeerError{Peer: p.id, Reason: reason, Err: err}})
	n.changed()
}

// peerLeft handles a peer's announced leave. Called from a link reader, it
// works in a goroutine so the reader never waits for senders.
func (n *Node) peerLeft(p *peer, reason string) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		n.peerDown(p, stateLeft, ErrPeerLeft, reason)
	}()
}

// protocolError logs a peer that broke the protocol and returns the error
// that ends its link. The peer holds the cluster key, so this is a bug or
// an attack; the link is re-dialled and the session resumes.
func (n *Node) protocolError(p *peer, err error) error {
	n.log.Warn("protocol violation, dropping the link", "peer", p.id, "err", err)
	// Forget what it asked for too: a peer that breaks the protocol may
	// have half-registered interests that would draw traffic to it.
	n.dropInterests(p)
	return fmt.Errorf("node: protocol violation by %s: %w", p.id, err)
}

// changed wakes everyone waiting for peers to change (WaitPeer, Flush).
func (n *Node) changed() {
	n.mu.Lock()
	close(n.changeCh)
	n.changeCh = make(chan struct{})
	n.mu.Unlock()
}

// lookup returns the live peer named name.
func (n *Node) lookup(name, topic string) (*peer, error) {
	if n.closing() {
		return nil, ErrClosed
	}
	p := (*n.names.Load())[name]
	if p == nil || !p.up.Load() {
		return nil, fmt.Errorf("%w: %q", ErrUnknownNode, name)
	}
	if id := p.ident.Load(); topic != StatusTopic && !id.mayServe(topic) {
		// A client's user may not serve topic: whatever it registered, it
		// is not a recipient of the cluster's messages on it.
		return nil, fmt.Errorf("%w: %s on %s may not serve topic %s", ErrForbidden, id, name, topic)
	}
	return p, nil
}

// publishNames makes the current byName readable without the lock, for
// the send path. Callers hold n.mu.
func (n *Node) publishNames() {
	m := make(map[string]*peer, len(n.byName))
	for k, v := range n.byName {
		m[k] = v
	}
	n.names.Store(&m)
}

// livePeers returns the peers that are alive.
func (n *Node) livePeers() []*peer {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]*peer, 0, len(n.byName))
	for _, p := range n.byName {
		if p.up.Load() {
			out = append(out, p)
		}
	}
	return out
}

// WaitPeer waits until a link to the node named name is up and ready.
func (n *Node) WaitPeer(ctx context.Context, name string) error {
	for {
		n.mu.Lock()
		p, ch := n.byName[name], n.changeCh
		n.mu.Unlock()
		if p != nil && p.readyLink() != nil {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("node: waiting for %q: %w", name, ctx.Err())
		case <-n.done:
			return ErrClosed
		}
	}
}

// Flush waits until every message sent so far has been acknowledged by its
// receiver, or its receiver is gone (then the message was reported).
func (n *Node) Flush(ctx context.Context) error {
	for _, p := range n.livePeers() {
		for {
			ok, ch := p.drained()
			if ok {
				break
			}
			select {
			case <-ch:
			case <-ctx.Done():
				return ctx.Err()
			case <-n.done:
				return ErrClosed
			}
		}
	}
	return nil
}

// Member describes a cluster member.
type Member struct {
	Name string            // stable name
	ID   string            // name#boot: one process
	Addr string            // link address
	Tags map[string]string // gossiped attributes
	// Client: the peer dialled in with a user login that could not make it
	// a member (no cluster key, or a user without admin or worker), so it is
	// not in the gossip. Such peers come and go with their processes
	// (conclave status is one); code that counts members can skip them.
	Client bool
}

func (p *peer) member() Member {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := Member{Name: p.name, ID: p.id, Tags: p.tags}
	if id := p.ident.Load(); id != nil && !id.memberLike() {
		m.Client = true
	}
	if p.addr.IsValid() {
		m.Addr = p.addr.String()
	}
	return m
}

// Members returns the live members, this node included, sorted by name.
// Clients connected to this node (Config.Connect) are peers, not members,
// and are not listed; a client lists the members it connected to.
func (n *Node) Members() []Member {
	out := []Member{{Name: n.cfg.Name, ID: n.id, Addr: n.LinkAddr(), Tags: n.cfg.Tags}}
	for _, p := range n.livePeers() {
		if p.inGossip.Load() || n.disco == nil {
			out = append(out, p.member())
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// SetTags replaces the node's tags and gossips them (EventUpdated at the
// other members).
func (n *Node) SetTags(tags map[string]string) error {
	if n.disco == nil {
		return errors.New("node: a client (Config.Connect) has no gossip to carry tags")
	}
	if err := n.disco.setTags(tags); err != nil {
		return err
	}
	n.mu.Lock()
	n.cfg.Tags = tags
	n.mu.Unlock()
	return nil
}

// Leave leaves the cluster gracefully: new sends fail with ErrClosed, every
// message already sent is delivered and acknowledged (bounded by ctx), the
// other members are told, gossip is left, and the node closes. If ctx ends
// first, the rest is reported as undeliverable and Leave returns ctx's
// error after closing.
func (n *Node) Leave(ctx context.Context) error {
	n.leaving.Store(true)
	err := n.Flush(ctx)
	if err == nil {
		for _, p := range n.livePeers() {
			p.leaveSent.Store(true)
			p.sendControl(ctlLeave, nil)
		}
		err = n.Flush(ctx)
	}
	if err == nil && n.disco != nil {
		timeout := time.Second
		if d, ok := ctx.Deadline(); ok {
			timeout = time.Until(d)
		}
		if lerr := n.disco.leave(timeout); lerr != nil {
			n.log.Debug("gossip leave", "err", lerr)
		}
	}
	n.Close()
	if errors.Is(err, ErrClosed) {
		return nil
	}
	return err
}

// Close stops the node at once: the other members are told it left,
// pending requests fail with ErrClosed, messages not yet acknowledged go
// to the Undeliverable hook, and every goroutine the node started has
// ended when Close returns. Use Leave to deliver first. Close is idempotent.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		// Tell peers before the links go, so they report a leave, not a
		// failure.
		for _, p := range n.livePeers() {
			if l := p.readyLink(); l != nil {
				l.writeEnvelope(&codecLeave)
				ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
				l.tl.Flush(ctx)
				cancel()
			}
		}
		if n.disco != nil {
			n.disco.leave(200 * time.Millisecond)
		}
		n.shutdown()
	})
	return nil
}

// shutdown stops everything Start started.
func (n *Node) shutdown() {
	n.leaving.Store(true)
	n.cancel()
	if n.disco != nil {
		n.disco.shutdown()
	}
	n.ln.Close()
	n.mu.Lock()
	peers := make([]*peer, 0, len(n.byID))
	for _, p := range n.byID {
		peers = append(peers, p)
	}
	n.mu.Unlock()
	for _, p := range peers {
		p.end(stateFailed, ErrClosed, "this node closed")
	}
	n.wg.Wait()
}
