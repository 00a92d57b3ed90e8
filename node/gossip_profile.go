package node

import (
	"fmt"
	"time"

	"github.com/hashicorp/memberlist"
)

// GossipProfile selects the timings of membership gossip and failure
// detection. Gossip only finds members and notices the ones that vanish
// without a word; a closed or silent link is usually noticed sooner.
//
// The times below were measured with five processes' worth of members on
// 127.0.0.1. Every profile also runs a periodic push-pull (a full state
// exchange with one random member): besides spreading state it repairs the
// rare gossip that memberlist loses (about one five-member cluster in a few
// hundred had one member unknown to another until the next push-pull), so
// its interval bounds how long such a gap lasts.
type GossipProfile uint8

const (
	// GossipLAN is the default (the zero value): memberlist's LAN timings,
	// probing every member once a second, push-pull every 15 s (memberlist's
	// default is 30 s). A member that dies without leaving is noticed by all
	// others after 6-7 s, longer in large clusters.
	GossipLAN GossipProfile = iota
	// GossipLocal suits processes that all run on one host: probes every
	// 500 ms, gossips every 50 ms and pushes-pulls every 5 s; a cluster
	// converges in about 50 ms and notices a death in 2.5-3 s. Unlike
	// memberlist's DefaultLocalConfig it keeps RetransmitMult at 4: with 2,
	// clusters on loopback were measured to take up to 27 s to converge.
	GossipLocal
	// GossipFast is for tests: probes every 200 ms, gossips every 20 ms and
	// pushes-pulls every second; a small cluster converges in tens of
	// milliseconds and notices a death in about a second. It costs more
	// traffic than a real cluster should pay.
	GossipFast
)

// String returns the profile name: "lan", "local" or "fast".
func (p GossipProfile) String() string {
	switch p {
	case GossipLAN:
		return "lan"
	case GossipLocal:
		return "local"
	case GossipFast:
		return "fast"
	}
	return fmt.Sprintf("GossipProfile(%d)", uint8(p))
}

// apply sets p's timings on a memberlist config that starts from
// memberlist.DefaultLANConfig. It reports an unknown profile.
func (p GossipProfile) apply(c *memberlist.Config) error {
	// A restarted process gets a new boot id and so a new memberlist name;
	// a short reclaim time still lets an identical name come back quickly
	// (memberlist would refuse it for 30-50 s otherwise).
	c.DeadNodeReclaimTime = time.Second
	switch p {
	case GossipLAN:
		// DefaultLANConfig's timings; memberlist stretches the push-pull
		// interval by itself in clusters above 32 members.
		c.PushPullInterval = 15 * time.Second
	case GossipLocal:
		c.TCPTimeout = 2 * time.Second
		c.ProbeInterval = 500 * time.Millisecond
		c.ProbeTimeout = 200 * time.Millisecond
		c.GossipInterval = 50 * time.Millisecond
		c.SuspicionMult = 3
		c.RetransmitMult = 4
		c.PushPullInterval = 5 * time.Second
		c.GossipToTheDeadTime = 10 * time.Second
	case GossipFast:
		c.TCPTimeout = time.Second
		c.ProbeInterval = 200 * time.Millisecond
		c.ProbeTimeout = 100 * time.Millisecond
		c.GossipInterval = 20 * time.Millisecond
		c.SuspicionMult = 2
		c.RetransmitMult = 4
		c.PushPullInterval = time.Second
		c.GossipToTheDeadTime = 2 * time.Second
	default:
		return fmt.Errorf("node: unknown gossip profile %v", p)
	}
	return nil
}
