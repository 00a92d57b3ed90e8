package node

import (
	"slices"
	"testing"
)

// TestFrameQueue drives the ring through growth while wrapped, partial and
// full drops, and checks order and the bytes charged against a plain slice.
func TestFrameQueue(t *testing.T) {
	var q frameQueue
	var model []outFrame
	next := uint64(1)
	check := func(what string) {
		t.Helper()
		got := q.frames()
		if q.len() != len(model) || !slices.EqualFunc(got, model, func(a, b outFrame) bool { return a.seq == b.seq && a.size == b.size }) {
			t.Fatalf("%s: queue %v, want %v", what, got, model)
		}
	}
	for round, pushes := range []int{10, 100, 3, 500, 64, 1, 1000} {
		for range pushes {
			f := outFrame{seq: next, size: int(next % 7), b: []byte{byte(next)}}
			q.push(f)
			model = append(model, f)
			next++
		}
		check("after pushes")
		// Drop about two thirds: the ring wraps on the next round.
		through := model[len(model)*2/3].seq
		var kept [][]byte
		bytes, count := q.dropThrough(through, func(b []byte) { kept = append(kept, b) })
		wantBytes, wantCount := 0, 0
		for len(model) > 0 && model[0].seq <= through {
			wantBytes += model[0].size
			wantCount++
			model = model[1:]
		}
		if bytes != wantBytes || count != wantCount || len(kept) != wantCount {
			t.Fatalf("round %d: dropped %d frames (%d bytes, %d kept), want %d (%d bytes)", round, count, bytes, len(kept), wantCount, wantBytes)
		}
		check("after a drop")
	}
	if _, count := q.dropThrough(0, func([]byte) { t.Fatal("kept a frame not acknowledged") }); count != 0 {
		t.Fatal("an old acknowledgement dropped frames")
	}
	got := q.reset()
	if len(got) != len(model) || got[0].seq != model[0].seq || q.len() != 0 || len(q.frames()) != 0 {
		t.Fatalf("reset returned %d frames starting at %d, want %d starting at %d", len(got), got[0].seq, len(model), model[0].seq)
	}
}
