// Package readhook lets the engine that writes checkpoints serve the reads computed tensors
// make of their sources: while a write is under way, reads of the readers it registered go
// through it (to be shared between outputs, read ahead, or seen once for a fingerprint).
// Reads of other readers, and every read when no write has registered anything, go straight
// to the reader.
package readhook

import (
	"io"
	"sync"
	"sync/atomic"

	"github.com/weft-ml/weft"
)

// Hook serves the reads of the readers registered with it.
type Hook interface {
	// ReadAt reads len(p) bytes of r at off, as r.ReadAt does (calling r.ReadAt, never
	// ReadAt of this package, for what it does not hold).
	ReadAt(r io.ReaderAt, p []byte, off int64) (int, error)
}

var (
	active atomic.Int64
	hooks  sync.Map // weft.ReaderKey -> Hook
)

// Register routes the reads of r (made through ReadAt) to h until Unregister. It reports
// false, and routes nothing, when r has no identity (weft.ReaderKey) or another hook has it.
func Register(r io.ReaderAt, h Hook) bool {
	k := weft.ReaderKey(r)
	if k == nil {
		return false
	}
	if _, loaded := hooks.LoadOrStore(k, h); loaded {
		return false
	}
	active.Add(1)
	return true
}

// Unregister ends the routing of r's reads to h (set up by a successful Register).
func Unregister(r io.ReaderAt, h Hook) {
	k := weft.ReaderKey(r)
	if k == nil {
		return
	}
	if hooks.CompareAndDelete(k, h) {
		active.Add(-1)
	}
}

// ReadAt reads len(p) bytes of r at off: through the hook r is registered with, if any, else
// from r.
func ReadAt(r io.ReaderAt, p []byte, off int64) (int, error) {
	if active.Load() > 0 {
		if k := weft.ReaderKey(r); k != nil {
			if h, ok := hooks.Load(k); ok {
				return h.(Hook).ReadAt(r, p, off)
			}
		}
	}
	return r.ReadAt(p, off)
}
