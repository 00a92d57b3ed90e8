package main

// Parent side: each function here runs one cell once, in fresh processes.

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"time"
)

// cfg is what every cell needs.
type cfg struct {
	dur, warm time.Duration
	runs      int
	key       []byte
	depth     int
	log       func(format string, args ...any)
}

// setupWait bounds starting processes, joining and linking; the measured
// window comes on top.
const setupWait = 60 * time.Second

// pinning places a server and a client process on CPUs (-1: not pinned).
type pinning struct {
	Name           string `json:"name"`
	Server, Client int    `json:"-"`
}

var (
	pinNone = pinning{Name: "unpinned", Server: -1, Client: -1}
	pinDiff = pinning{Name: "cores 0 and 1", Server: 1, Client: 0}
	pinSame = pinning{Name: "both on core 0", Server: 0, Client: 0}
)

// tput is one one-way throughput run.
type tput struct {
	MsgsPerSec float64 `json:"msgs_per_s"`
	MBPerSec   float64 `json:"mb_per_s"`
	Drops      int64   `json:"drops,omitempty"`
	// SentPerSec is the sender's rate over its whole sending time (warm-up
	// included, final flush excluded): well above MsgsPerSec means messages
	// queued up somewhere.
	SentPerSec float64 `json:"sent_per_s"`
}

// lat is one request/reply run. Latencies in microseconds.
type lat struct {
	P50       float64 `json:"p50_us,omitempty"`
	P90       float64 `json:"p90_us,omitempty"`
	P99       float64 `json:"p99_us,omitempty"`
	ReqPerSec float64 `json:"req_per_s"`
}

// roleNames: the receiving and the sending role of each system.
var (
	oneWayRoles = map[string][2]string{
		"nats":     {"nats-sub", "nats-pub"},
		"raw":      {"raw-sink", "raw-send"},
		"conclave": {"cc-sink", "cc-send"},
	}
	rrRoles = map[string][2]string{ // server, sequential client
		"nats":     {"nats-reply", "nats-req"},
		"raw":      {"raw-echo", "raw-ping"},
		"conclave": {"cc-echo", "cc-ping"},
	}
	pipeRoles = map[string]string{"nats": "nats-pipe", "raw": "raw-pipe", "conclave": "cc-pipe"}
)

// pairSetup starts what the server side of a system needs (a nats-server for
// NATS) and returns the parameters both children share.
func pairSetup(ctx context.Context, c *cfg, sys string, size int, g *group) (params, *natsServer, error) {
	p := params{Size: size, Warm: c.warm, Dur: c.dur}
	var ns *natsServer
	if sys == "nats" {
		var err error
		if ns, err = startNATS(ctx); err != nil {
			return p, nil, err
		}
		*g = append(*g, ns.child)
		p.Addr = ns.url
	}
	return p, ns, nil
}

// serverParams and clientParams give each conclave child its name.
func serverParams(p params) params { p.Name = "bench-b"; return p }
func clientParams(p params) params { p.Name, p.Peer = "bench-a", "bench-b"; return p }

func (c *cfg) keyFor(sys string) []byte {
	if sys == "conclave" {
		return c.key
	}
	return nil
}

// runOneWay measures one-way throughput once.
func runOneWay(ctx context.Context, c *cfg, sys string, size int) (res tput, err error) {
	ctx, cancel := context.WithTimeout(ctx, setupWait+c.warm+c.dur)
	defer cancel()
	var g group
	defer func() {
		if err != nil {
			g.killAll()
		}
	}()
	p, ns, err := pairSetup(ctx, c, sys, size, &g)
	if err != nil {
		return res, err
	}
	r := oneWayRoles[sys]
	recv, err := spawn(ctx, spec{role: r[0], p: serverParams(p), cpu: -1, key: c.keyFor(sys)})
	if err != nil {
		return res, err
	}
	g = append(g, recv)
	ready, err := recv.expect(ctx, "ready")
	if err != nil {
		return res, err
	}
	if ready.Addr != "" {
		p.Addr = ready.Addr
	}
	send, err := spawn(ctx, spec{role: r[1], p: clientParams(p), cpu: -1, key: c.keyFor(sys)})
	if err != nil {
		return res, err
	}
	g = append(g, send)
	if _, err := send.expect(ctx, "ready"); err != nil {
		return res, err
	}
	out, err := recv.expect(ctx, "result")
	if err != nil {
		return res, err
	}
	if err := send.send("stop"); err != nil {
		return res, err
	}
	done, err := send.expect(ctx, "done")
	if err != nil {
		return res, err
	}
	res.MsgsPerSec = float64(out.Count) / out.Secs
	res.MBPerSec = res.MsgsPerSec * float64(size) / 1e6
	res.Drops = out.Dropped + done.Dropped
	if done.Secs > 0 {
		res.SentPerSec = float64(done.Count) / done.Secs
	}
	if ns != nil {
		sc, err := ns.slowConsumers()
		if err != nil {
			return res, fmt.Errorf("nats-server /varz: %w", err)
		}
		res.Drops += sc
	}
	return res, g.stopAll(10 * time.Second)
}

// runReqRep measures request/reply once: sequential when depth is 1,
// pipelined with depth requests in flight otherwise.
func runReqRep(ctx context.Context, c *cfg, sys string, size, depth int, pin pinning) (res lat, err error) {
	ctx, cancel := context.WithTimeout(ctx, setupWait+c.warm+c.dur)
	defer cancel()
	var g group
	defer func() {
		if err != nil {
			g.killAll()
		}
	}()
	p, _, err := pairSetup(ctx, c, sys, size, &g)
	if err != nil {
		return res, err
	}
	p.Depth = depth
	srv, err := spawn(ctx, spec{role: rrRoles[sys][0], p: serverParams(p), cpu: pin.Server, key: c.keyFor(sys)})
	if err != nil {
		return res, err
	}
	g = append(g, srv)
	ready, err := srv.expect(ctx, "ready")
	if err != nil {
		return res, err
	}
	if ready.Addr != "" {
		p.Addr = ready.Addr
	}
	role := rrRoles[sys][1]
	if depth > 1 {
		role = pipeRoles[sys]
	}
	cli, err := spawn(ctx, spec{role: role, p: clientParams(p), cpu: pin.Client, key: c.keyFor(sys)})
	if err != nil {
		return res, err
	}
	g = append(g, cli)
	out, err := cli.expect(ctx, "result")
	if err != nil {
		return res, err
	}
	res = lat{ReqPerSec: float64(out.Count) / out.Secs}
	if depth == 1 {
		res.P50, res.P90, res.P99 = out.P50/1e3, out.P90/1e3, out.P99/1e3
	}
	return res, g.stopAll(10 * time.Second)
}

// memResult is one memory run: VmRSS of the measured node with links to
// Links[i] other nodes.
type memResult struct {
	Links   []int   `json:"links"`
	RSSKiB  []int64 `json:"rss_kib"`
	PerLink float64 `json:"per_link_kib"` // (RSS at the last step - RSS idle) / links
}

var memSteps = []int{0, 1, 2, 4, 8}

// runMemory starts one node, reads its RSS idle, then after it has links to
// 1, 2, 4 and 8 other node processes.
func runMemory(ctx context.Context, c *cfg) (res memResult, err error) {
	ctx, cancel := context.WithTimeout(ctx, setupWait+30*time.Second)
	defer cancel()
	var g group
	defer func() {
		if err != nil {
			g.killAll()
		}
	}()
	const settle = 500 * time.Millisecond
	m, err := spawn(ctx, spec{role: "cc-node", p: params{Name: "mem-0"}, cpu: -1, key: c.key})
	if err != nil {
		return res, err
	}
	g = append(g, m)
	ready, err := m.expect(ctx, "ready")
	if err != nil {
		return res, err
	}
	have := 0
	for _, want := range memSteps {
		var names []string
		for have < want {
			have++
			name := fmt.Sprintf("mem-%d", have)
			peer, err := spawn(ctx, spec{role: "cc-node", p: params{Name: name, Addr: ready.Addr}, cpu: -1, key: c.key})
			if err != nil {
				return res, err
			}
			g = append(g, peer)
			if _, err := peer.expect(ctx, "ready"); err != nil {
				return res, err
			}
			names = append(names, name)
		}
		if len(names) > 0 {
			if err := m.send("link " + strings.Join(names, ",")); err != nil {
				return res, err
			}
			if _, err := m.expect(ctx, "linked"); err != nil {
				return res, err
			}
		}
		time.Sleep(settle)
		kib, err := rssKiB(m.pid())
		if err != nil {
			return res, err
		}
		res.Links = append(res.Links, want)
		res.RSSKiB = append(res.RSSKiB, kib)
	}
	last := len(res.Links) - 1
	res.PerLink = float64(res.RSSKiB[last]-res.RSSKiB[0]) / float64(res.Links[last])
	return res, g.stopAll(10 * time.Second)
}

// failResult is one failure-detection run. Times in milliseconds.
type failResult struct {
	KillMs      float64   `json:"kill_detect_max_ms"`
	KillEach    []float64 `json:"kill_detect_ms"`
	KillKinds   []string  `json:"kill_event_kinds"`
	LeaveMs     float64   `json:"leave_detect_max_ms"`
	LeaveEach   []float64 `json:"leave_detect_ms"`
	LeaveKinds  []string  `json:"leave_event_kinds"`
	LeaveCallMs float64   `json:"leave_call_ms"` // how long Leave took in the leaving node
	// A frozen process (SIGSTOP: no FIN, no heartbeats) is detected by
	// silence alone; informational, seen by the two remaining members.
	FreezeMs    float64   `json:"freeze_detect_max_ms"`
	FreezeEach  []float64 `json:"freeze_detect_ms"`
	FreezeKinds []string  `json:"freeze_event_kinds"`
}

const clusterSize = 5

// runFailure starts a cluster of five node processes, SIGKILLs one and
// times how long until each survivor reports it failed, then has another
// leave gracefully and times until each remaining one reports it left, then
// freezes a third with SIGSTOP and times until the last two report it.
func runFailure(ctx context.Context, c *cfg) (res failResult, err error) {
	ctx, cancel := context.WithTimeout(ctx, setupWait+60*time.Second)
	defer cancel()
	var g group
	defer func() {
		if err != nil {
			g.killAll()
		}
	}()
	names := make([]string, clusterSize)
	for i := range names {
		names[i] = fmt.Sprintf("fd-%d", i+1)
	}
	seed := ""
	for i, name := range names {
		n, err := spawn(ctx, spec{role: "cc-node", p: params{Name: name, Addr: seed}, cpu: -1, key: c.key})
		if err != nil {
			return res, err
		}
		g = append(g, n)
		ready, err := n.expect(ctx, "ready")
		if err != nil {
			return res, err
		}
		if i == 0 {
			seed = ready.Addr
		}
	}
	for i, n := range g {
		others := slices.Delete(slices.Clone(names), i, i+1)
		if err := n.send("wait " + strings.Join(others, ",")); err != nil {
			return res, err
		}
	}
	for _, n := range g {
		if _, err := n.expect(ctx, "peers"); err != nil {
			return res, err
		}
	}
	time.Sleep(500 * time.Millisecond) // let gossip settle

	// SIGKILL the last node.
	victim := g[clusterSize-1]
	tKill := time.Now().UnixNano()
	if err := syscall.Kill(victim.pid(), syscall.SIGKILL); err != nil {
		return res, err
	}
	<-victim.done
	survivors := g[:clusterSize-1]
	res.KillEach, res.KillKinds, err = awaitEvents(ctx, survivors, names[clusterSize-1], tKill, 10*time.Second)
	if err != nil {
		return res, fmt.Errorf("after SIGKILL of %s: %w", names[clusterSize-1], err)
	}
	res.KillMs = slices.Max(res.KillEach)

	// The second to last leaves gracefully.
	leaver := g[clusterSize-2]
	if err := leaver.send("leave"); err != nil {
		return res, err
	}
	start, err := leaver.expect(ctx, "leaving")
	if err != nil {
		return res, err
	}
	res.LeaveEach, res.LeaveKinds, err = awaitEvents(ctx, g[:clusterSize-2], names[clusterSize-2], start.T, 10*time.Second)
	if err != nil {
		return res, fmt.Errorf("after Leave of %s: %w", names[clusterSize-2], err)
	}
	res.LeaveMs = slices.Max(res.LeaveEach)
	end, err := leaver.expect(ctx, "leave-done")
	if err != nil {
		return res, err
	}
	res.LeaveCallMs = float64(end.T-start.T) / 1e6

	// SIGSTOP a third: nothing closes its sockets, so only silence tells.
	frozen := g[clusterSize-3]
	tStop := time.Now().UnixNano()
	if err := syscall.Kill(frozen.pid(), syscall.SIGSTOP); err != nil {
		return res, err
	}
	res.FreezeEach, res.FreezeKinds, err = awaitEvents(ctx, g[:clusterSize-3], names[clusterSize-3], tStop, 20*time.Second)
	_ = syscall.Kill(frozen.pid(), syscall.SIGKILL)
	<-frozen.done
	if err != nil {
		return res, fmt.Errorf("after SIGSTOP of %s: %w", names[clusterSize-3], err)
	}
	res.FreezeMs = slices.Max(res.FreezeEach)
	return res, append(g[:clusterSize-3:clusterSize-3], leaver).stopAll(10 * time.Second)
}

// awaitEvents waits until every one of nodes has reported a left or failed
// event about name at or after t0, and returns each delay in ms and kind.
func awaitEvents(ctx context.Context, nodes []*child, name string, t0 int64, limit time.Duration) ([]float64, []string, error) {
	ms := make([]float64, len(nodes))
	kinds := make([]string, len(nodes))
	deadline := time.Now().Add(limit)
	for {
		missing := 0
		for i, n := range nodes {
			if kinds[i] != "" {
				continue
			}
			for _, ev := range n.eventsSnapshot() {
				if ev.Name == name && ev.T >= t0 && (ev.Kind == "failed" || ev.Kind == "left") {
					ms[i], kinds[i] = float64(ev.T-t0)/1e6, ev.Kind
					break
				}
			}
			if kinds[i] == "" {
				missing++
			}
		}
		if missing == 0 {
			return ms, kinds, nil
		}
		if time.Now().After(deadline) {
			var who []string
			for i, n := range nodes {
				if kinds[i] == "" {
					who = append(who, n.name)
				}
			}
			return ms, kinds, fmt.Errorf("%d of %d nodes saw no left/failed event for %s within %v (%s)",
				missing, len(nodes), name, limit, strings.Join(who, ", "))
		}
		if ctx.Err() != nil {
			return ms, kinds, ctx.Err()
		}
		time.Sleep(2 * time.Millisecond)
	}
}
