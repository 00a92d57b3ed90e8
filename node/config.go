package node

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"time"

	"github.com/seed0811993b/conclave/auth"
	"github.com/seed0811993b/conclave/transport"
)

// Defaults for the zero fields of Config.
const (
	DefaultCluster           = "default"
	DefaultBind              = "127.0.0.1:0"
	DefaultSendQueueBytes    = 4 << 20
	DefaultInboxBytes        = 4 << 20
	DefaultHeartbeatInterval = 250 * time.Millisecond
	DefaultHeartbeatTimeout  = 2 * time.Second
	DefaultMaxRequests       = 1024
	DefaultMaxClientsPerUser = 256
)

// Config configures a Node. Name and Key are required; every other zero
// field means the documented default. A Config must not be modified while
// its Node runs.
type Config struct {
	// Name is the node's stable name, 1 to 64 characters of [A-Za-z0-9._-].
	// Other nodes address it by this name. Each Start adds a fresh boot id,
	// so a restarted process is a new member (ID "name#bootid") and what the
	// old one had not acknowledged fails loudly instead of vanishing.
	Name string

	// Key is the shared cluster key (auth.GenerateKey, auth.LoadKeyFile).
	// It authenticates every link and, through a derived key, the gossip.
	Key auth.Key

	// Cluster names the cluster. Nodes with different names do not join each
	// other's gossip even when they share a key. Default: DefaultCluster.
	Cluster string

	// Bind is the gossip address, host:port; port 0 lets the OS choose
	// (GossipAddr reports it). Gossip uses this port on both UDP and TCP.
	// Default: DefaultBind, which is loopback only.
	Bind string

	// Advertise is the gossip address other members use, when it differs
	// from Bind (NAT, or Bind on 0.0.0.0). Default: the bound address.
	Advertise string

	// LinkBind is the address of the link listener. Default: Bind's host,
	// port 0.
	LinkBind string

	// LinkAdvertise is the link address published to other members when it
	// differs from the bound one (a proxy in front of the node). Its host
	// must be the gossip host; only the port is published.
	// Default: the bound port.
	LinkAdvertise string

	// Join lists gossip addresses (host:port) of existing members. Start fails if none
	// can be joined. Empty: start a new cluster.
	Join []string

	// Tags are small key/value attributes gossiped with the membership
	// (the whole encoding must stay under 400 bytes); see Node.SetTags.
	Tags map[string]string

	// Gossip selects memberlist timings. Default: GossipLAN.
	Gossip GossipProfile

	// Connect makes this node a client: it does not join the gossip (Join,
	// Tags and Gossip are unused; Bind's host still places its link
	// listener) and instead dials these link addresses
	// (Node.LinkAddr of cluster members) at Start, which fails if one
	// cannot be reached or refuses the login. A client reaches only the
	// members it connects to, and may serve nothing to them unless its
	// user's roles allow it.
	Connect []string

	// User and Password log this node in as a user on the links it dials
	// (SCRAM-SHA-256 in the handshake). With Key also set it proves both.
	User     string
	Password auth.Password

	// Users checks the user logins of incoming links, and Require says
	// what an incoming link must prove: the cluster key (the default), a
	// user login, or both. A peer that logged in as a user is held to its
	// roles (auth.RoleAdmin, RoleWorker, RoleClient, RoleMonitor): see
	// docs/security.md.
	Users   *auth.SCRAMServer
	Require auth.Require

	// MaxClientsPerUser bounds the peers one user may have here at once
	// through links that logged in with a password and no cluster key
	// (clients): a further login as that user is refused until one ends.
	// Default: DefaultMaxClientsPerUser.
	MaxClientsPerUser int

	// SendQueueBytes bounds, per peer, the encoded messages sent but not yet
	// acknowledged. A send waits for room, so a slow consumer slows its
	// senders instead of growing memory. Default: DefaultSendQueueBytes.
	SendQueueBytes int

	// InboxBytes bounds, per peer, received one-way messages waiting for
	// their handler. When it is full the node stops reading from that peer.
	// Default: DefaultInboxBytes.
	InboxBytes int

	// MaxRequests bounds the request handlers running at once; further
	// requests wait. Default: DefaultMaxRequests.
	MaxRequests int

	// HeartbeatInterval is how often an idle link sends a heartbeat.
	// Default: DefaultHeartbeatInterval.
	HeartbeatInterval time.Duration

	// HeartbeatTimeout is how long a link may stay silent before it is
	// dropped and re-dialled. Default: DefaultHeartbeatTimeout.
	HeartbeatTimeout time.Duration

	// MaxFrameSize is the largest message, envelope included, this node
	// accepts. Default: auth.DefaultMaxFrameSize.
	MaxFrameSize int

	// NetDialer makes the TCP connections of links. Default: net.Dialer.
	NetDialer transport.ContextDialer

	// Undeliverable receives every one-way message that was not
	// acknowledged before its peer failed, left or restarted, or before the
	// node closed, and one-way messages the receiver had no handler for.
	// It runs on a node goroutine: do not block in it. Default: each one is
	// logged at warn level.
	Undeliverable func(Undelivered)

	// Logger receives the node's logs, memberlist's included. Default:
	// discard.
	Logger *slog.Logger
}

// Undelivered describes a one-way message that did not reach a handler.
type Undelivered struct {
	To    string // the member ID (name#boot) it was sent to
	Topic string
	Body  []byte // the encoded payload; nil when the receiver reported it
	Err   error  // why: wraps ErrPeerFailed, ErrPeerLeft, ErrPeerRestarted, ErrClosed or ErrNoResponders
}

// withDefaults returns a copy of c with defaults filled in, or an error
// saying which field is wrong.
func (c Config) withDefaults() (Config, error) {
	if err := discoCheckName(c.Name); err != nil {
		return c, err
	}
	keyless := len(c.Connect) > 0 && c.User != "" // a client logging in as a user needs no cluster key
	if len(c.Key) == 0 && !keyless {
		return c, errors.New("node: Config.Key is required (see auth.GenerateKey and auth.LoadKeyFile), unless a client (Config.Connect) logs in as a Config.User")
	}
	if len(c.Key) > 0 && len(c.Key) < auth.MinKeyLen {
		return c, fmt.Errorf("node: Config.Key has %d bytes, want at least %d", len(c.Key), auth.MinKeyLen)
	}
	if c.Require != auth.RequireKey && c.User == "" && len(c.Connect) == 0 {
		return c, errors.New("node: Config.Require asks peers for a user login, so this member must log in too: set Config.User and Password")
	}
	if len(c.Connect) > 0 && len(c.Join) > 0 {
		return c, errors.New("node: Config.Connect (a client) and Config.Join (a member) exclude each other")
	}
	for _, a := range append(slices.Clone(c.Join), c.Connect...) {
		// Without a port memberlist would try this node's own gossip port.
		if _, port, err := net.SplitHostPort(a); err != nil || port == "" || port == "0" {
			return c, fmt.Errorf("node: address %q in Config.Join or Connect: want host:port", a)
		}
	}
	if c.Cluster == "" {
		c.Cluster = DefaultCluster
	}
	if c.Bind == "" {
		c.Bind = DefaultBind
	}
	if c.SendQueueBytes <= 0 {
		c.SendQueueBytes = DefaultSendQueueBytes
	}
	if c.InboxBytes <= 0 {
		c.InboxBytes = DefaultInboxBytes
	}
	if c.MaxRequests <= 0 {
		c.MaxRequests = DefaultMaxRequests
	}
	if c.MaxClientsPerUser <= 0 {
		c.MaxClientsPerUser = DefaultMaxClientsPerUser
	}
	if c.HeartbeatInterval <= 0 {
		c.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if c.HeartbeatTimeout <= 0 {
		c.HeartbeatTimeout = DefaultHeartbeatTimeout
	}
	if c.HeartbeatTimeout < 2*c.HeartbeatInterval {
		return c, fmt.Errorf("node: HeartbeatTimeout %v must be at least twice HeartbeatInterval %v", c.HeartbeatTimeout, c.HeartbeatInterval)
	}
	if c.MaxFrameSize <= 0 {
		c.MaxFrameSize = auth.DefaultMaxFrameSize
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}
