package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"sync"
	"sync/atomic"
)

// maxHeaderBlock bounds the blocks fetched while a header is read in small pieces.
const maxHeaderBlock = 1 << 20

// parseRead is the largest read taken for a piece of a header being parsed (the GGUF reader
// reads through a 64 KiB buffer); larger reads are tensor data.
const parseRead = 64 << 10

// nStreams is the number of sequential readers a file follows at once.
const nStreams = 8

// file is one remote file: an io.ReaderAt over HTTP range requests with a cache of the
// pieces fetched ("extents"). Reads are served from extents, fetching what is missing:
//
//   - Small reads (64 KiB at most) from the start of the file on are headers being parsed:
//     they fetch a block (BlockSize) that doubles each time, up to 1 MiB. Other small
//     reads (fingerprints, tiny tensors) fetch what they ask. Both are kept after they were
//     read, up to KeepBytes per file, since readers come back to them (a header is hashed
//     after it was parsed; a tensor's first bytes are fingerprinted, then copied).
//   - Large reads feed sequential-stream detection: from the second read of a stream on,
//     data is fetched ahead of the reader in parallel ranges of RangeSize, the window
//     doubling up to ReadAhead, so that readers find their data arrived. Large extents are
//     dropped once every byte was read: a byte is fetched once.
//
// All extents count against the client's CacheBytes; read-ahead stops at that bound.
type file struct {
	c       *Client
	display string // hf:// name or redacted URL, for messages
	url     string // where requests go first (the Hub's resolve URL, or the https URL)
	t       target
	size    int64
	commit  string // for Hub files: the commit, checked against X-Repo-Commit
	sha256  string // for Hub LFS files: the content hash, checked against X-Linked-Etag

	ctx    context.Context
	cancel context.CancelFunc

	loc   atomic.Pointer[string] // the download URL a redirect led to, reused
	pinMu sync.Mutex
	pins  map[string]string // host -> first ETag seen

	mu        sync.Mutex
	exts      []*extent // sorted by off, not overlapping
	kept      int64     // bytes of kept extents
	tick      int64
	hdrNext   int64 // end of the last header-block fetch
	hdrBlock  int64
	lastSmall bool
	lastEnd   int64
	streams   [nStreams]stream
	consumed  spans // data read in full and dropped: read-ahead never fetches it again
	fatal     error // sticky: the file changed
	closed    bool
}

type extent struct {
	off, end int64
	buf      []byte
	pooled   bool
	done     chan struct{}
	err      error
	keep     bool
	readers  int
	seen     []span // delivered bytes, merged
	last     int64
	gone     bool // removed from the file's list
}

type span struct{ a, b int64 }

// spans is a sorted list of disjoint, non-adjacent intervals.
type spans []span

// add adds [a, b), merging.
func (s *spans) add(a, b int64) {
	v := *s
	i := sort.Search(len(v), func(i int) bool { return v[i].b >= a })
	j := i
	for j < len(v) && v[j].a <= b {
		a, b = min(a, v[j].a), max(b, v[j].b)
		j++
	}
	v = append(v[:i], append([]span{{a, b}}, v[j:]...)...)
	*s = v
}

// skip returns the end of the interval holding pos (pos when none does) and the start of
// the next interval after that (limit when none).
func (s spans) skip(pos, limit int64) (int64, int64) {
	i := sort.Search(len(s), func(i int) bool { return s[i].b > pos })
	if i < len(s) && s[i].a <= pos {
		pos = s[i].b
		i++
	}
	if i < len(s) && s[i].a < limit {
		limit = s[i].a
	}
	return pos, limit
}

type stream struct {
	start, next, ahead, window int64
	confirmed                  bool
	last                       int64
}

func newFile(c *Client, display, u string, t target, size int64) *file {
	parent := c.o.Context
	if parent == nil {
		parent = context.Background()
	}
	ctx, cancel := context.WithCancel(parent)
	return &file{c: c, display: display, url: u, t: t, size: size, ctx: ctx, cancel: cancel, pins: map[string]string{}}
}

func (f *file) location() (string, bool) {
	if p := f.loc.Load(); p != nil {
		return *p, true
	}
	return f.url, false
}

func (f *file) setLocation(u string) { f.loc.Store(&u) }
func (f *file) forgetLocation()      { f.loc.Store(nil) }

// Size returns the file's size.
func (f *file) Size() int64 { return f.size }

// ReadAt reads len(p) bytes at off, as os.File.ReadAt does: n < len(p) only with an error,
// io.EOF at the end of the file.
func (f *file) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("negative offset %d", off)
	}
	if off >= f.size {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	want := min(int64(len(p)), f.size-off)
	n, err := f.read(p[:want], off)
	if err == nil && want < int64(len(p)) {
		err = io.EOF
	}
	return n, err
}

func (f *file) read(p []byte, off int64) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	o := &f.c.o
	end := off + int64(len(p))
	small := len(p) <= parseRead

	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return 0, os.ErrClosed
	}
	if f.fatal != nil {
		f.mu.Unlock()
		return 0, f.fatal
	}
	f.tick++
	var need, fresh []*extent
	// Header parsers read from the start, in small contiguous pieces (a big one now and
	// then, right after a small one: a whole safetensors header, a GGUF array).
	inHeader := off == 0 || (off <= f.hdrNext && (small || (f.lastSmall && off == f.lastEnd)))
	pos := off
	i := f.find(pos)
	for pos < end {
		if i < len(f.exts) && f.exts[i].off <= pos {
			e := f.exts[i]
			e.readers++
			e.last = f.tick
			need = append(need, e)
			pos = e.end
			i++
			continue
		}
		next := f.size
		if i < len(f.exts) {
			next = f.exts[i].off
		}
		stop := min(end, next)
		keep := small || inHeader
		if inHeader && small {
			// A header read in small pieces: fetch a block, larger each time.
			if pos == 0 || f.hdrBlock == 0 {
				f.hdrBlock = o.BlockSize
			} else {
				f.hdrBlock = min(2*f.hdrBlock, max(maxHeaderBlock, o.BlockSize))
			}
			stop = min(max(stop, pos+f.hdrBlock), next)
		}
		if inHeader {
			f.hdrNext = max(f.hdrNext, stop)
		}
		for pos < stop {
			n := min(stop-pos, o.RangeSize)
			e := f.newExtent(pos, pos+n, keep)
			f.insert(i, e)
			i++
			fresh = append(fresh, e)
			if e.off < end {
				e.readers++
				need = append(need, e)
			}
			pos += n
		}
	}
	if !small {
		fresh = append(fresh, f.readAhead(off, end)...)
	}
	f.lastSmall, f.lastEnd = small, end
	f.mu.Unlock()

	for _, e := range fresh {
		go f.run(e)
	}
	n := 0
	var err error
	for _, e := range need {
		if err == nil {
			<-e.done
			if e.err != nil {
				err = e.err
			} else {
				a, b := max(e.off, off), min(e.end, end)
				copy(p[a-off:b-off], e.buf[a-e.off:b-e.off])
				n = int(b - off)
			}
		}
	}
	f.mu.Lock()
	for _, e := range need {
		e.readers--
		if e.err == nil {
			e.mark(max(e.off, off), min(e.end, end))
		}
		f.settle(e)
	}
	if f.kept > o.KeepBytes {
		f.evictKept()
	}
	f.mu.Unlock()
	if err != nil {
		return n, err
	}
	return len(p), nil
}

// find returns the index of the first extent that ends after pos.
func (f *file) find(pos int64) int {
	return sort.Search(len(f.exts), func(i int) bool { return f.exts[i].end > pos })
}

func (f *file) insert(i int, e *extent) {
	f.exts = append(f.exts, nil)
	copy(f.exts[i+1:], f.exts[i:])
	f.exts[i] = e
}

// bufPool recycles the buffers of large extents.
var bufPool sync.Pool

// newExtent makes an extent to fetch; the caller inserts it and starts it.
func (f *file) newExtent(a, b int64, keep bool) *extent {
	n := b - a
	e := &extent{off: a, end: b, keep: keep, done: make(chan struct{}), last: f.tick}
	if rs := f.c.o.RangeSize; !keep && n > rs/2 && n <= rs {
		if p, ok := bufPool.Get().(*[]byte); ok && int64(cap(*p)) == rs {
			e.buf = (*p)[:n]
		} else {
			e.buf = make([]byte, n, rs)
		}
		e.pooled = true
	} else {
		e.buf = make([]byte, n)
	}
	f.c.hold(n)
	if keep {
		f.kept += n
	}
	return e
}

// run fetches an extent.
func (f *file) run(e *extent) {
	err := f.fetch(f.ctx, e.buf, e.off)
	f.mu.Lock()
	defer f.mu.Unlock()
	if err != nil {
		if f.closed {
			err = os.ErrClosed
		}
		e.err = err
		if errors.Is(err, ErrChanged) && f.fatal == nil {
			f.fatal = err
		}
	}
	close(e.done)
	f.settle(e)
}

// mark records that [a, b) of e was delivered.
func (e *extent) mark(a, b int64) {
	if a >= b {
		return
	}
	s := append(e.seen, span{a, b})
	sort.Slice(s, func(i, j int) bool { return s[i].a < s[j].a })
	out := s[:1]
	for _, x := range s[1:] {
		if l := &out[len(out)-1]; x.a <= l.b {
			l.b = max(l.b, x.b)
		} else {
			out = append(out, x)
		}
	}
	e.seen = out
}

func (e *extent) complete() bool {
	return len(e.seen) == 1 && e.seen[0].a == e.off && e.seen[0].b == e.end
}

func (e *extent) finished() bool {
	select {
	case <-e.done:
		return true
	default:
		return false
	}
}

// settle drops e when nobody needs it any more: failed, or large and read in full.
// Called with f.mu held.
func (f *file) settle(e *extent) {
	if e.gone || e.readers > 0 || !e.finished() {
		return
	}
	if e.err != nil || (!e.keep && e.complete()) || f.closed {
		f.remove(e)
	}
}

// remove takes e out of the file's list and frees its buffer. Called with f.mu held, for
// a finished extent nobody reads.
func (f *file) remove(e *extent) {
	if e.gone {
		return
	}
	i := sort.Search(len(f.exts), func(i int) bool { return f.exts[i].off >= e.off })
	if i < len(f.exts) && f.exts[i] == e {
		f.exts = append(f.exts[:i], f.exts[i+1:]...)
	}
	e.gone = true
	if !e.keep && e.complete() {
		f.consumed.add(e.off, e.end)
	}
	n := int64(len(e.buf))
	f.c.hold(-n)
	if e.keep {
		f.kept -= n
	}
	if e.pooled {
		b := e.buf[:0]
		bufPool.Put(&b)
	}
	e.buf = nil
}

// evictKept drops the least recently used kept extents until KeepBytes holds. Called with
// f.mu held.
func (f *file) evictKept() {
	var c []*extent
	for _, e := range f.exts {
		if e.keep && e.readers == 0 && e.finished() {
			c = append(c, e)
		}
	}
	sort.Slice(c, func(i, j int) bool { return c[i].last < c[j].last })
	for _, e := range c {
		if f.kept <= f.c.o.KeepBytes {
			return
		}
		f.remove(e)
	}
}

// evictIdle drops this file's large extents that were fetched ahead and not read (a
// reader that went elsewhere), least recently used first, until n more bytes fit in
// CacheBytes. Called with f.mu held.
func (f *file) evictIdle(n int64) bool {
	limit := f.c.o.CacheBytes
	if f.c.held.Load()+n <= limit {
		return true
	}
	var c []*extent
	for _, e := range f.exts {
		if !e.keep && e.readers == 0 && e.finished() {
			c = append(c, e)
		}
	}
	sort.Slice(c, func(i, j int) bool { return c[i].last < c[j].last })
	for _, e := range c {
		if f.c.held.Load()+n <= limit {
			break
		}
		// Data ahead of an active reader is what it is about to read: keep it.
		if f.aheadOfStream(e) {
			continue
		}
		f.remove(e)
	}
	return f.c.held.Load()+n <= limit
}

func (f *file) aheadOfStream(e *extent) bool {
	for _, s := range f.streams {
		if s.confirmed && e.off >= s.next-s.window && e.off < s.ahead && f.tick-s.last < 64 {
			return true
		}
	}
	return false
}

// readAhead follows sequential readers: it finds the stream a large read [off, end)
// continues (or starts one) and, from the stream's second read on, fetches ahead of it.
// Called with f.mu held; it returns the new extents to start.
func (f *file) readAhead(off, end int64) []*extent {
	o := &f.c.o
	var s *stream
	for i := range f.streams {
		t := &f.streams[i]
		if t.last == 0 {
			continue
		}
		lo := max(t.start, t.next-2*max(t.window, o.RangeSize))
		hi := max(t.next, t.ahead) + o.RangeSize
		if off >= lo && off <= hi {
			s = t
			break
		}
	}
	if s == nil {
		lru := 0
		for i := range f.streams {
			if f.streams[i].last < f.streams[lru].last {
				lru = i
			}
		}
		f.streams[lru] = stream{start: off, next: end, ahead: end, last: f.tick}
		return nil
	}
	s.last = f.tick
	s.next = max(s.next, end)
	s.ahead = max(s.ahead, end)
	if !s.confirmed {
		s.confirmed = true
		s.window = min(2*o.RangeSize, o.ReadAhead)
	}
	want := min(f.size, s.next+s.window)
	if want-s.ahead < o.RangeSize && want < f.size {
		return nil // still far enough ahead
	}
	var out []*extent
	pos := s.ahead
	i := f.find(pos)
	for pos < want {
		if i < len(f.exts) && f.exts[i].off <= pos {
			pos = f.exts[i].end
			i++
			continue
		}
		stop := want
		if i < len(f.exts) {
			stop = min(stop, f.exts[i].off)
		}
		// Data already read (by readers of other streams) is not fetched again.
		var from int64
		if from, stop = f.consumed.skip(pos, stop); from > pos {
			pos = from
			i = f.find(pos)
			continue
		}
		for pos < stop {
			n := min(o.RangeSize, stop-pos)
			if !f.evictIdle(n) {
				s.ahead = pos
				return out
			}
			i = f.find(pos) // evictIdle may have removed extents
			e := f.newExtent(pos, pos+n, false)
			f.insert(i, e)
			i++
			out = append(out, e)
			pos += n
		}
	}
	s.ahead = max(s.ahead, want)
	s.window = min(2*s.window, o.ReadAhead)
	return out
}

// Close cancels the file's requests and frees its memory.
func (f *file) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil
	}
	f.closed = true
	f.cancel()
	for _, e := range append([]*extent(nil), f.exts...) {
		f.settle(e)
	}
	return nil
}
