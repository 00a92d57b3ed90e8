// Package node is what programs embed to join a conclave cluster: a Node
// finds its peers with memberlist gossip, keeps one authenticated, sealed
// link (package transport) to each, and carries messages between their
// handlers.
//
//	n, err := node.Start(ctx, node.Config{Name: "worker-3", Key: key, Join: []string{"10.0.0.1:7946"}})
//	defer n.Close()
//	n.Handle("resize", func(ctx context.Context, m *node.Msg) (any, error) { ... })
//	err = n.Send(ctx, "worker-7", "log", entry)          // one way, to a node's handler
//	err = n.Request(ctx, "worker-7", "resize", img, &out) // request/reply
//	err = n.Publish(ctx, "events.job", ev)                // to every subscriber
//	sub, err := n.QueueSubscribe("jobs", "workers", h)    // one group member per message
//	for ev := range n.Events() { ... }                    // joined, left, failed, updated
//
// # Delivery
//
// Messages from one node to another travel in one sequenced stream per
// pair. The sender keeps each message until the receiver acknowledges it
// and sends it again over the next connection when one breaks; the
// receiver drops what it already has. So while both processes live,
// messages arrive exactly once and in order, however often connections
// are cut. When a peer fails, leaves or restarts (a new process under the
// same name), nothing is dropped silently: pending requests fail at once
// with a *PeerError, and unacknowledged one-way messages go to
// Config.Undeliverable.
//
// Every queue is bounded: a send waits while its peer's queue is full
// (Config.SendQueueBytes), and a node stops reading from a peer whose
// messages it cannot handle fast enough (Config.InboxBytes), so a slow
// consumer slows its senders instead of growing memory.
//
// # Handlers
//
// One-way messages from one sender run one at a time, in order, on a
// goroutine of that sender's. Requests run on goroutines of their own (at
// most Config.MaxRequests at once), so a handler may itself call the node
// that sent it a request. Panics in handlers are recovered and logged; a
// requester receives ErrHandlerPanic.
//
// # Membership
//
// Gossip is encrypted with a key derived from the cluster key and labelled
// with the cluster name, so a process without both cannot join it, read it
// or inject into it; links authenticate with the cluster key itself. Each
// process is a member "name#bootid": a restarted process is a new member,
// and the old one's unacknowledged messages are reported. A peer whose
// link port refuses connections is declared failed at once, which notices
// a killed process within milliseconds rather than the seconds gossip
// takes; heartbeats on every link notice silent partitions within
// Config.HeartbeatTimeout.
package node
