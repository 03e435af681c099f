package weft

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"reflect"
	"sync"
	"sync/atomic"
)

// SameReader reports whether x and y are the same reader value: one file section, one
// computed tensor's data. Readers of types that cannot be compared are never the same.
func SameReader(x, y io.ReaderAt) bool {
	if x == nil || y == nil {
		return false
	}
	tx := reflect.TypeOf(x)
	if tx != reflect.TypeOf(y) || !tx.Comparable() {
		return false
	}
	return x == y
}

// ReaderKey returns a value that identifies the reader r as a map key (r itself), or nil when
// r's type cannot be compared (then it has no identity to share).
func ReaderKey(r io.ReaderAt) any {
	if r == nil || !reflect.TypeOf(r).Comparable() {
		return nil
	}
	return r
}

// SameData reports whether a and b are one tensor's data under two names: the same Data
// reader with the same dtype and shape, so that their bytes are equal by construction.
func SameData(a, b *Tensor) bool {
	if a == nil || b == nil || a.DType != b.DType || len(a.Shape) != len(b.Shape) || !SameReader(a.Data, b.Data) {
		return false
	}
	for i := range a.Shape {
		if a.Shape[i] != b.Shape[i] {
			return false
		}
	}
	return true
}

// Ties returns the tied tensors of c: for each tensor whose TiedTo names another tensor of c
// with the same data (SameData), its name mapped to that tensor's name. A TiedTo whose
// partner is missing or has other data (an op changed one of the two) is no tie.
func (c *Checkpoint) Ties() map[string]string {
	out := map[string]string{}
	var idx map[string]*Tensor
	for _, t := range c.Tensors {
		if t.TiedTo == "" || t.TiedTo == t.Name {
			continue
		}
		if idx == nil {
			idx = c.Index()
		}
		if u := idx[t.TiedTo]; SameData(t, u) {
			out[t.Name] = u.Name
		}
	}
	return out
}

// Tied reports whether tensors a and b of a checkpoint are tied: one of them names the
// other in TiedTo, and they have the same data.
func Tied(a, b *Tensor) bool {
	return a != nil && b != nil && (a.TiedTo == b.Name || b.TiedTo == a.Name) && a.Name != b.Name && SameData(a, b)
}

// Sourced is implemented by the data of computed tensors that declare the tensors they read.
// The engine that writes a checkpoint uses it to read each input chunk once for every output
// that needs it, to read ahead, and to refuse writing over an input.
type Sourced interface {
	// Sources returns the tensors the data reads. rowsMatch reports that rows [r0, r1) of
	// the data are computed from rows [r0, r1) of each source and from no other rows (rows
	// a source does not have are read from nothing), so that a read of those rows can be
	// prepared in advance; without it the sources are read in ways the engine cannot predict.
	Sources() (srcs []*Tensor, rowsMatch bool)
}

// Leaves calls fn for every tensor read from a file (not computed) that t's data reads,
// directly or through computed tensors that declare their sources (Sourced), t itself when it
// is such a tensor; each tensor once.
func Leaves(t *Tensor, fn func(*Tensor)) {
	seen := map[*Tensor]bool{}
	var walk func(*Tensor)
	walk = func(x *Tensor) {
		if x == nil || seen[x] {
			return
		}
		seen[x] = true
		if s, ok := x.Data.(Sourced); ok {
			srcs, _ := s.Sources()
			for _, y := range srcs {
				walk(y)
			}
			return
		}
		if _, computed := x.Data.(RowAligned); computed {
			return
		}
		fn(x)
	}
	walk(t)
}

// FingerprintBytes is how much of each end of every tensor a data fingerprint covers.
const FingerprintBytes = 4096

// FingerprintSpans returns the byte ranges of a tensor of size bytes that its data
// fingerprint covers: its first FingerprintBytes, and its last FingerprintBytes past those.
func FingerprintSpans(size int64) (head, tail [2]int64) {
	head = [2]int64{0, min(size, FingerprintBytes)}
	tail = [2]int64{head[1], head[1]}
	if size > FingerprintBytes {
		tail = [2]int64{size - min(size-FingerprintBytes, FingerprintBytes), size}
	}
	return head, tail
}

// FingerprintOf returns the data fingerprint of tensors named names given the bytes of
// their spans (FingerprintSpans): a hex SHA-256 over each name, a zero byte, and its head
// and tail bytes, in order.
func FingerprintOf(names []string, heads, tails [][]byte) string {
	h := sha256.New()
	for i, n := range names {
		h.Write([]byte(n))
		h.Write([]byte{0})
		h.Write(heads[i])
		h.Write(tails[i])
	}
	return hex.EncodeToString(h.Sum(nil))
}

// DataFingerprint returns the data fingerprint of c: a hex SHA-256 over every tensor's name
// and its first and last 4 KiB of data (FingerprintOf). Header hashes identify a layout, and a
// base and its fine-tune usually share one; the fingerprint tells them apart from a few reads
// per tensor. The reads are made by a few goroutines (a remote input answers each after a
// round trip).
func DataFingerprint(c *Checkpoint) (string, error) {
	const workers = 16
	n := len(c.Tensors)
	names := make([]string, n)
	heads := make([][]byte, n)
	tails := make([][]byte, n)
	errs := make([]error, n)
	next := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < min(workers, n); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				heads[i], tails[i], errs[i] = fingerprintPieces(c.Tensors[i])
			}
		}()
	}
	for i, t := range c.Tensors {
		names[i] = t.Name
		next <- i
	}
	close(next)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return "", err
		}
	}
	return FingerprintOf(names, heads, tails), nil
}

// fingerprintPieces reads the bytes of t's fingerprint spans.
func fingerprintPieces(t *Tensor) (head, tail []byte, err error) {
	size, err := t.Size()
	if err != nil {
		return nil, nil, err
	}
	hd, tl := FingerprintSpans(size)
	var out [2][]byte
	for k, sp := range [2][2]int64{hd, tl} {
		b := make([]byte, sp[1]-sp[0])
		if m, err := t.Data.ReadAt(b, sp[0]); m != len(b) {
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, nil, fmt.Errorf("tensor %q: %w", t.Name, err)
		}
		out[k] = b
	}
	return out[0], out[1], nil
}

// Deferred is a value of a checkpoint's metadata or key-values that is computed when the
// checkpoint is written, so that planning reads no tensor data: the data fingerprint
// (DataFingerprint) of an input checkpoint, which provenance records under Placeholder, a
// string of the fingerprint's width. The write computes it from the bytes it reads anyway
// and puts it in place of the placeholder in the output's headers.
type Deferred struct {
	Placeholder string
	Input       *Checkpoint
}

// placeholderPrefix starts every placeholder; it cannot be part of a hex fingerprint.
const placeholderPrefix = "weft-pending-data-fingerprint-"

var placeholders atomic.Int64

// NewPlaceholder returns a new placeholder for a deferred fingerprint: 64 characters, as
// wide as a hex SHA-256, unique in this process, never a fingerprint.
func NewPlaceholder() string {
	n := placeholders.Add(1)
	return fmt.Sprintf("%s%0*d", placeholderPrefix, 64-len(placeholderPrefix), n)
}

// HasPlaceholder reports whether b holds a deferred value's placeholder.
func HasPlaceholder(b []byte) bool { return bytes.Contains(b, []byte(placeholderPrefix)) }
