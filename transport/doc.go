// Package transport carries frames between two processes over an
// authenticated connection.
//
// A Link is one connection after its handshake (package auth): Send queues a
// frame and returns, one writer goroutine batches queued frames into as few
// writes (and sealed records) as possible, and Recv returns the next frame.
// Frames use the header of Python's multiprocessing.connection, so a Link in
// auth.ModePython talks to Python's Connection.send_bytes and recv_bytes.
//
//	ln, err := transport.Listen("tcp", "127.0.0.1:7000", &transport.Config{Auth: &auth.Config{Key: key}})
//	...
//	link, err := ln.Accept(ctx) // authenticated; handshakes run off the accept loop
//	msg, err := link.Recv(ctx)
//	err = link.Send(ctx, msg)
//
// Limits are enforced before memory is committed: frame sizes against the
// limits each side announced in the handshake, the send queue against
// Config.SendQueueBytes, and unauthenticated connections against
// Config.MaxPendingHandshakes.
package transport
