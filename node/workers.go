package node

import "time"

// request is an incoming request waiting for its handler.
type request struct {
	p  *peer
	id uint64
	m  *Msg
}

// workerIdle is how long a request worker waits for more work before it
// exits.
const workerIdle = 2 * time.Second

// startRequest runs r's handler on an idle worker, or on a new one. The
// caller holds a reqSem slot, which serve gives back. Workers outlive
// their request for a while because a fresh goroutine per request grew
// its stack through the handler and the reply path every time: 13% of a
// request-serving process's CPU went to copying stacks.
func (n *Node) startRequest(r request) {
	select {
	case n.reqWork <- r:
	default:
		n.wg.Add(1)
		go n.requestWorker(r)
	}
}

// requestWorker serves r, then further requests until it has been idle
// for workerIdle or the node closes.
func (n *Node) requestWorker(r request) {
	defer n.wg.Done()
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		n.serve(r.p, r.id, r.m) // gives the slot back
		idle.Reset(workerIdle)
		select {
		case r = <-n.reqWork:
		case <-idle.C:
			return
		case <-n.done:
			return
		}
	}
}
