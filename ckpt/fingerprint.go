package ckpt

import (
	"bytes"
	"fmt"
	"sync"

	"github.com/weft-ml/weft"
)

// fpState gathers the data fingerprint (weft.DataFingerprint) of one input checkpoint from
// the reads of a write: each tensor's head and tail spans, as the write's reads cover them;
// what they leave uncovered is read at the end.
type fpState struct {
	c     *weft.Checkpoint
	mu    sync.Mutex
	names []string
	spans [][2][2]int64 // per tensor: head, tail
	data  [][2][]byte
	have  [][2][]uint64 // bitsets of the bytes of each span filled
	value string
}

// fpRef is one tensor of a fingerprint whose bytes a reader holds.
type fpRef struct {
	fp *fpState
	i  int
}

func newFPState(c *weft.Checkpoint) (*fpState, error) {
	fp := &fpState{c: c}
	for _, t := range c.Tensors {
		n, err := t.Size()
		if err != nil {
			return nil, err
		}
		h, tl := weft.FingerprintSpans(n)
		fp.names = append(fp.names, t.Name)
		fp.spans = append(fp.spans, [2][2]int64{h, tl})
		fp.data = append(fp.data, [2][]byte{make([]byte, h[1]-h[0]), make([]byte, tl[1]-tl[0])})
		fp.have = append(fp.have, [2][]uint64{make([]uint64, (h[1]-h[0]+63)/64), make([]uint64, (tl[1]-tl[0]+63)/64)})
	}
	return fp, nil
}

// capture copies what b, bytes [off, off+len(b)) of a reader, holds of the fingerprint spans
// of the tensors ds's reader is the data of.
func capture(ds *dataState, b []byte, off int64) {
	end := off + int64(len(b))
	for _, ref := range ds.fps {
		fp := ref.fp
		for s := 0; s < 2; s++ {
			sp := fp.spans[ref.i][s]
			lo, hi := max(sp[0], off), min(sp[1], end)
			if lo >= hi {
				continue
			}
			fp.mu.Lock()
			copy(fp.data[ref.i][s][lo-sp[0]:hi-sp[0]], b[lo-off:hi-off])
			bits := fp.have[ref.i][s]
			for x := lo - sp[0]; x < hi-sp[0]; x++ {
				bits[x/64] |= 1 << (x % 64)
			}
			fp.mu.Unlock()
		}
	}
}

// finish reads the spans the write did not cover and computes the fingerprint.
func (fp *fpState) finish() error {
	fp.mu.Lock()
	defer fp.mu.Unlock()
	for i, t := range fp.c.Tensors {
		for s := 0; s < 2; s++ {
			sp := fp.spans[i][s]
			if full(fp.have[i][s], sp[1]-sp[0]) {
				continue
			}
			buf := fp.data[i][s]
			if k, err := t.Data.ReadAt(buf, sp[0]); k != len(buf) {
				return fmt.Errorf("fingerprint of %s: tensor %q: reading bytes %d-%d: %v", fp.c.Path, t.Name, sp[0], sp[1], err)
			}
		}
	}
	heads := make([][]byte, len(fp.data))
	tails := make([][]byte, len(fp.data))
	for i := range fp.data {
		heads[i], tails[i] = fp.data[i][0], fp.data[i][1]
	}
	fp.value = weft.FingerprintOf(fp.names, heads, tails)
	return nil
}

// full reports whether the first n bits of bits are set.
func full(bits []uint64, n int64) bool {
	for x := int64(0); x < n; x++ {
		if bits[x/64]&(1<<(x%64)) == 0 {
			return false
		}
	}
	return true
}

// patchHeaders returns the headers of a plan's files with every deferred value of c in place
// of its placeholder; a placeholder left over (a value c does not defer) is an error.
func patchHeaders(c *weft.Checkpoint, p *Plan, values map[*weft.Checkpoint]string) ([][]byte, error) {
	out := make([][]byte, len(p.Layout.Files))
	for i, f := range p.Layout.Files {
		h := f.Header
		if weft.HasPlaceholder(h) {
			h = bytes.Clone(h)
			for _, d := range c.Deferred {
				v, ok := values[d.Input]
				if !ok || len(v) != len(d.Placeholder) {
					return nil, fmt.Errorf("ckpt: internal error: no value for %s", d.Placeholder)
				}
				h = bytes.ReplaceAll(h, []byte(d.Placeholder), []byte(v))
			}
			if weft.HasPlaceholder(h) {
				return nil, fmt.Errorf("%s: the header holds a provenance placeholder that nothing computes (metadata copied from a checkpoint in memory that is not written)", f.Name)
			}
		}
		out[i] = h
	}
	return out, nil
}
