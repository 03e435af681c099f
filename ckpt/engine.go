package ckpt

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/internal/readhook"
)

var (
	tempMu  sync.Mutex
	tempSet = map[string]bool{}
)

func register(p string)   { tempMu.Lock(); tempSet[p] = true; tempMu.Unlock() }
func unregister(p string) { tempMu.Lock(); delete(tempSet, p); tempMu.Unlock() }
func isRegistered(p string) bool {
	tempMu.Lock()
	defer tempMu.Unlock()
	return tempSet[p]
}

// RemoveTemps removes every temporary file and directory still being written. A command's
// signal handler calls it before exiting, so that an interrupted run leaves nothing behind.
func RemoveTemps() {
	tempMu.Lock()
	defer tempMu.Unlock()
	for p := range tempSet {
		os.RemoveAll(p)
		delete(tempSet, p)
	}
}

// rowAligned reports whether a tensor's data is computed a row at a time; everything else
// (file sections, gathered views) is read in chunks of any size.
func rowAligned(t *weft.Tensor) bool {
	r, ok := t.Data.(weft.RowAligned)
	return ok && r.RowAligned()
}

// The engine writes the tensors of the outputs of one pass (see ExecuteMany). Its work is
// cut in jobs: a range of rows of one output tensor, written to every output that has the
// same tensor (the same Data) there. Jobs are grouped by the input chunk they read: a group
// is a range of rows of an anchor, the input tensor a job's tensor is computed from, row for
// row (weft.Sourced), or the tensor itself; the row ranges of a group are the same for every
// output, whatever its types, so that their reads coincide. Groups are taken in order. For
// each, a planner finds the chunks its jobs read more than once (an input chunk several
// outputs are computed from, a computed tensor several outputs read) and makes a cache entry
// for each: input chunks are read ahead by a few I/O goroutines, and the group's jobs go to
// the compute workers once they are in memory; every reader of a chunk is served from its
// entry (through readhook), and a computed chunk is computed once, by its first reader. An
// entry is dropped when its last expected reader has read it or its groups are done; the
// planner stays within a window of bytes. A chunk read once is read by its job directly,
// through the kernel's read-ahead (the input files are advised sequential), without a copy.
// Writes start their write-back as they go (a flusher goroutine), so that the final sync does
// not wait for gigabytes of dirty pages.

// engine defaults.
const (
	defaultChunkElems = 256 << 10
	defaultChunkBytes = 4 << 20
	// defaultWindow bounds the bytes read ahead (cache entries alive), unless MemoryBudget
	// leaves less.
	defaultWindow = 64 << 20
	// ioDepth is the number of reads in flight.
	ioDepth = 4
)

// dest is where a job's bytes go: a file, and the absolute offset of the job's first byte.
type dest struct {
	f    *os.File
	off  int64
	name string // the output file's final path, for messages
	w    *behind
}

// behind counts the bytes written to an output file since the kernel was last told to
// write them back: the engine starts the write-back every writeBehind bytes rather than
// leaving gigabytes of dirty pages to the final sync.
type behind struct {
	f     *os.File
	dirty atomic.Int64
}

// writeBehind is how many bytes of an output may be written before their write-back starts.
const writeBehind = 32 << 20

func (b *behind) wrote(n int64, flush chan<- *os.File) {
	if b.dirty.Add(n) >= writeBehind {
		b.dirty.Store(0)
		select {
		case flush <- b.f: // to the flusher, so that no worker waits on the device
		default:
		}
	}
}

// job is bytes [off, off+n) of tensor t, written to every dest.
type job struct {
	g      *group
	t      *weft.Tensor
	off, n int64
	// rows: the job is rows [r0, r1) of t, read ahead and shareable; otherwise a range of
	// bytes of a raw tensor whose rows are too large for one chunk.
	rows   bool
	r0, r1 int64
	dests  []dest
}

// group is the jobs that read one chunk of one anchor, in every output.
type group struct {
	jobs    []*job
	left    int      // jobs not done (under cache.mu)
	loads   int      // entries to load before the jobs start (under cache.mu)
	entries []*entry // entries this group holds
}

// rkey identifies a range of bytes of a reader.
type rkey struct {
	data   any
	off, n int64
}

// entry holds one range of one reader's bytes in memory for the readers expected to read it.
type entry struct {
	ds     *dataState
	r      io.ReaderAt
	off, n int64
	buf    *[]byte
	state  int // entryNew, entryLoading, entryReady
	done   chan struct{}
	err    error
	refs   int      // expected reads not yet served
	groups int      // groups holding it
	pins   int      // reads copying out of it now
	wait   []*group // groups waiting for it to load
	gone   bool     // dropped from the cache
	freed  bool     // its memory given back
}

const (
	entryNew = iota
	entryLoading
	entryReady
)

// dataState is what the cache knows of one reader.
type dataState struct {
	key     any
	entries []*entry
	fps     []fpRef // fingerprints its bytes go into
	hooked  bool    // registered with readhook
}

// cache serves reads of registered readers from entries, and sees every read of them for
// the fingerprints.
type cache struct {
	mu     sync.Mutex
	cond   *sync.Cond // signalled when entries are dropped or groups finish
	states map[any]*dataState
	live   int64 // bytes of entries
	window int64
	active int // groups released and not done
	// free holds the buffers of freed entries for new ones (a free list rather than a
	// sync.Pool: buffers the collector drops come back as fresh pages, and page faults).
	spare      [][]byte
	spareBytes int64
	ready      *jobQueue
}

func newCache(window int64, ready *jobQueue) *cache {
	c := &cache{states: map[any]*dataState{}, window: window, ready: ready}
	c.cond = sync.NewCond(&c.mu)
	return c
}

// state returns the state of the reader with key k, making it (under c.mu).
func (c *cache) state(k any) *dataState {
	ds := c.states[k]
	if ds == nil {
		ds = &dataState{key: k}
		c.states[k] = ds
	}
	return ds
}

// hook registers r's reads with the cache, once; it reports whether they come here.
func (c *cache) hook(ds *dataState, r io.ReaderAt) bool {
	if !ds.hooked {
		ds.hooked = readhook.Register(r, c)
	}
	return ds.hooked
}

// unhookAll ends the routing of every registered reader.
func (c *cache) unhookAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, ds := range c.states {
		if ds.hooked {
			readhook.Unregister(k.(io.ReaderAt), c)
			ds.hooked = false
		}
	}
}

func (c *cache) getBuf(n int64) *[]byte {
	best := -1
	for i, b := range c.spare {
		if int64(cap(b)) >= n && (best < 0 || cap(b) < cap(c.spare[best])) {
			best = i
		}
	}
	if best >= 0 {
		b := c.spare[best][:n]
		c.spareBytes -= int64(cap(b))
		c.spare[best] = c.spare[len(c.spare)-1]
		c.spare = c.spare[:len(c.spare)-1]
		return &b
	}
	b := make([]byte, n)
	return &b
}

// putBuf keeps a buffer for later entries, within the read-ahead window's worth.
func (c *cache) putBuf(p *[]byte) {
	if c.spareBytes+int64(cap(*p)) > c.window {
		return
	}
	c.spare = append(c.spare, (*p)[:0])
	c.spareBytes += int64(cap(*p))
}

// find returns the entry of ds holding [off, off+n), or nil (under c.mu).
func (ds *dataState) find(off, n int64) *entry {
	for _, e := range ds.entries {
		if e.off <= off && off+n <= e.off+e.n {
			return e
		}
	}
	return nil
}

// exact returns the entry of ds for exactly [off, off+n), or nil (under c.mu).
func (ds *dataState) exact(off, n int64) *entry {
	for _, e := range ds.entries {
		if e.off == off && e.n == n {
			return e
		}
	}
	return nil
}

// ReadAt serves a read of a registered reader: from its entry, loading it if no one has,
// or from the reader.
func (c *cache) ReadAt(r io.ReaderAt, p []byte, off int64) (int, error) {
	k := weft.ReaderKey(r)
	c.mu.Lock()
	ds := c.states[k]
	var e *entry
	if ds != nil {
		e = ds.find(off, int64(len(p)))
	}
	if e == nil {
		c.mu.Unlock()
		n, err := r.ReadAt(p, off)
		if ds != nil && len(ds.fps) > 0 {
			capture(ds, p[:n], off)
		}
		return n, err
	}
	e.pins++
	c.load(e)
	c.mu.Unlock()
	var n int
	err := e.err
	if err == nil {
		n = copy(p, (*e.buf)[off-e.off:])
	}
	c.mu.Lock()
	e.pins--
	e.refs--
	if e.refs <= 0 {
		c.drop(e)
	}
	c.free(e)
	c.mu.Unlock()
	return n, err
}

// load makes e ready: it reads it when no one has started to (under c.mu, which it
// releases while reading), or waits for the reader that has.
func (c *cache) load(e *entry) {
	switch e.state {
	case entryNew:
		e.state = entryLoading
		e.buf = c.getBuf(e.n)
		c.mu.Unlock()
		n, err := e.r.ReadAt(*e.buf, e.off)
		if n == int(e.n) {
			err = nil
		} else if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		if err == nil && len(e.ds.fps) > 0 {
			capture(e.ds, *e.buf, e.off)
		}
		c.mu.Lock()
		e.err = err
		e.state = entryReady
		close(e.done)
		for _, g := range e.wait {
			g.loads--
			if g.loads == 0 {
				c.release(g)
			}
		}
		e.wait = nil
		c.free(e)
	case entryLoading:
		c.mu.Unlock()
		<-e.done
		c.mu.Lock()
	}
}

// drop removes e from the cache: no later read is served from it (under c.mu).
func (c *cache) drop(e *entry) {
	if e.gone {
		return
	}
	e.gone = true
	for i, x := range e.ds.entries {
		if x == e {
			e.ds.entries = append(e.ds.entries[:i], e.ds.entries[i+1:]...)
			break
		}
	}
	c.free(e)
}

// free gives back the memory of a dropped entry once it is loaded and no read copies out of
// it (under c.mu).
func (c *cache) free(e *entry) {
	if !e.gone || e.pins > 0 || e.state == entryLoading || e.freed {
		return
	}
	if e.buf != nil {
		c.putBuf(e.buf)
		e.buf = nil
	}
	c.live -= e.n
	e.freed = true
	c.cond.Broadcast()
}

// release hands g's jobs to the workers (under c.mu).
func (c *cache) release(g *group) {
	c.ready.push(g.jobs)
}

// groupDone releases what g held (under c.mu).
func (c *cache) groupDone(g *group) {
	for _, e := range g.entries {
		e.groups--
		if e.groups <= 0 {
			c.drop(e)
		}
	}
	g.entries = nil
	c.active--
	c.cond.Broadcast()
}

// readSet returns the ranges the jobs of g read and how often: for each job's tensor, its
// rows, and the same rows of its sources when it is computed from them row for row,
// through chains of such tensors (a tensor computed once for several readers is read once
// from its sources).
func readSet(g *group) (order []rkey, count map[rkey]int, tensor map[rkey]*weft.Tensor) {
	count = map[rkey]int{}
	tensor = map[rkey]*weft.Tensor{}
	var visit func(y *weft.Tensor, r0, r1 int64)
	visit = func(y *weft.Tensor, r0, r1 int64) {
		r1 = min(r1, y.Rows())
		if r0 >= r1 {
			return
		}
		k := weft.ReaderKey(y.Data)
		if k == nil {
			return
		}
		rb := y.RowBytes()
		key := rkey{k, r0 * rb, (r1 - r0) * rb}
		n, seen := count[key]
		count[key] = n + 1
		if seen {
			return
		}
		order = append(order, key)
		tensor[key] = y
		if s, ok := y.Data.(weft.Sourced); ok {
			if srcs, match := s.Sources(); match {
				for _, x := range srcs {
					visit(x, r0, r1)
				}
			}
		}
	}
	for _, j := range g.jobs {
		if j.rows {
			visit(j.t, j.r0, j.r1)
		}
	}
	return order, count, tensor
}

// plan makes g's entries: one for every range read more than once, of a tensor read from a
// file (read ahead) or of a computed tensor (computed by its first reader). It waits while
// the entries alive and g's would exceed the window, or maxActive groups are under way,
// unless none is. It returns the entries to load.
func (c *cache) plan(ctx context.Context, g *group, maxActive int) []*entry {
	order, count, tensors := readSet(g)
	type want struct {
		k    rkey
		t    *weft.Tensor
		leaf bool
	}
	var wants []want
	var need int64
	for _, k := range order {
		t := tensors[k]
		leaf := !rowAligned(t)
		if count[k] < 2 {
			// One reader: it reads for itself, through the kernel's read-ahead (an
			// entry would cost a copy and gain nothing, measured).
			continue
		}
		wants = append(wants, want{k, t, leaf})
		need += k.n
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.active > 0 && (c.live+need > c.window || c.active >= maxActive) && ctx.Err() == nil {
		c.cond.Wait()
	}
	var loads []*entry
	for _, w := range wants {
		ds := c.state(w.k.data)
		if !c.hook(ds, w.t.Data) {
			continue
		}
		e := ds.exact(w.k.off, w.k.n)
		if e == nil {
			e = &entry{ds: ds, r: w.t.Data, off: w.k.off, n: w.k.n, done: make(chan struct{})}
			ds.entries = append(ds.entries, e)
			c.live += e.n
			if w.leaf {
				loads = append(loads, e)
			}
		}
		e.refs += count[w.k]
		e.groups++
		g.entries = append(g.entries, e)
		if w.leaf && e.state != entryReady {
			e.wait = append(e.wait, g)
			g.loads++
		}
	}
	c.active++
	if g.loads == 0 {
		c.release(g)
	}
	return loads
}

// jobQueue hands jobs to the workers, in the order they were released.
type jobQueue struct {
	mu     sync.Mutex
	cond   *sync.Cond
	jobs   []*job
	closed bool
}

func newJobQueue() *jobQueue {
	q := &jobQueue{}
	q.cond = sync.NewCond(&q.mu)
	return q
}

func (q *jobQueue) push(js []*job) {
	q.mu.Lock()
	q.jobs = append(q.jobs, js...)
	q.mu.Unlock()
	q.cond.Broadcast()
}

func (q *jobQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.cond.Broadcast()
}

// pop returns the next job, or nil once the queue is closed and empty.
func (q *jobQueue) pop() *job {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.jobs) == 0 && !q.closed {
		q.cond.Wait()
	}
	if len(q.jobs) == 0 {
		return nil
	}
	j := q.jobs[0]
	q.jobs[0] = nil
	q.jobs = q.jobs[1:]
	return j
}

// passOptions are the engine's settings for one pass.
type passOptions struct {
	threads    int
	chunkElems int64
	chunkBytes int64
	window     int64
	// done counts the bytes written, of total, over every pass.
	done     *atomic.Int64
	total    int64
	progress func(done, total int64)
}

// maxActive bounds the groups under way: enough to keep every worker busy while the next
// groups' chunks are read.
func (o passOptions) maxActive() int { return 4*o.threads + 4 }

func (o ManyOptions) pass() passOptions {
	p := passOptions{threads: o.Threads, chunkElems: o.ChunkElems, chunkBytes: o.ChunkBytes, window: defaultWindow, progress: o.Progress}
	if p.threads <= 0 {
		p.threads = runtime.GOMAXPROCS(0)
	}
	if p.chunkElems <= 0 {
		p.chunkElems = defaultChunkElems
	}
	if p.chunkBytes <= 0 {
		p.chunkBytes = defaultChunkBytes
	}
	return p
}

// anchor returns the tensor t's rows are computed from row for row, through chains of
// computed tensors (its first source's anchor), or t itself.
func anchor(t *weft.Tensor) *weft.Tensor {
	for {
		s, ok := t.Data.(weft.Sourced)
		if !ok {
			return t
		}
		srcs, match := s.Sources()
		if !match || len(srcs) == 0 {
			return t
		}
		t = srcs[0]
	}
}

// identity returns a map key for t's data: its reader, or t itself when the reader has
// none.
func identity(t *weft.Tensor) any {
	if k := weft.ReaderKey(t.Data); k != nil {
		return k
	}
	return t
}

// stream is the tensors of every output of a pass that are cut in the same chunks: those
// computed row for row from one anchor (or copied from it) in chunks of rows, or a raw tensor
// whose rows are too large for a chunk, in chunks of bytes. Its groups, one per chunk, are
// made one at a time as the planner reaches them, so that the engine holds the jobs of the
// groups under way, not of the whole pass.
type stream struct {
	bytes  bool
	step   int64 // rows (or bytes) per chunk
	chunks int64
	member []member
}

// member is one output tensor of a stream.
type member struct {
	t    *weft.Tensor
	size int64
	d    dest // where its first byte goes
}

// streams cuts the tensors of the targets into streams (see above), in the order the first
// output's tensors come.
func streams(targets []*target, o passOptions) []*stream {
	type skey struct {
		anchor any
		bytes  bool
	}
	index := map[skey]*stream{}
	var out []*stream
	for _, tg := range targets {
		bs := make([]*behind, len(tg.files))
		for i, f := range tg.files {
			if f != nil {
				bs[i] = &behind{f: f}
			}
		}
		for i, t := range tg.c.Tensors {
			size := tg.p.Infos[i].MustSize()
			pl := tg.p.Layout.Places[i]
			if size == 0 || tg.files[pl.File] == nil {
				continue
			}
			d := dest{f: tg.files[pl.File], off: pl.Offset, name: tg.fileName(pl.File), w: bs[pl.File]}
			a := anchor(t)
			k := max(1, o.chunkElems/max(1, a.RowLen()))
			rb := t.RowBytes()
			key := skey{identity(a), !rowAligned(t) && (rb <= 0 || rb*k > 4*o.chunkBytes)}
			if key.bytes {
				key.anchor = identity(t) // rows too large to read whole: a raw copy in bytes
			}
			st := index[key]
			if st == nil {
				st = &stream{bytes: key.bytes, step: k}
				if key.bytes {
					st.step = o.chunkBytes
				}
				index[key] = st
				out = append(out, st)
			}
			n := t.Rows()
			if st.bytes {
				n = size
			}
			st.chunks = max(st.chunks, (n+st.step-1)/st.step)
			st.member = append(st.member, member{t, size, d})
		}
	}
	return out
}

// group returns the jobs of chunk c of the stream: each member's rows (or bytes) in the
// chunk, members with the same data making one job written to each.
func (st *stream) group(c int64) *group {
	type jkey struct {
		data   any
		off, n int64
	}
	g := &group{}
	jobs := map[jkey]*job{}
	for _, m := range st.member {
		j := &job{g: g, t: m.t, rows: !st.bytes}
		if st.bytes {
			j.off = c * st.step
			j.n = min(st.step, m.size-j.off)
		} else {
			rb := m.t.RowBytes()
			j.r0, j.r1 = c*st.step, min(m.t.Rows(), (c+1)*st.step)
			j.off, j.n = j.r0*rb, (j.r1-j.r0)*rb
		}
		if j.n <= 0 {
			continue
		}
		d := m.d
		d.off += j.off
		k := jkey{identity(m.t), j.off, j.n}
		if x := jobs[k]; x != nil {
			x.dests = append(x.dests, d)
			continue
		}
		j.dests = []dest{d}
		jobs[k] = j
		g.jobs = append(g.jobs, j)
	}
	g.left = len(g.jobs)
	return g
}

// runPass writes the tensors of the targets: every job of every group, reading ahead. fps
// are the fingerprints the pass computes; the cache sees their inputs' reads.
func runPass(ctx context.Context, targets []*target, fps []*fpState, o passOptions) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	strs := streams(targets, o)
	var ngroups int64
	for _, st := range strs {
		ngroups += st.chunks
	}
	done := o.done
	if done == nil {
		done = new(atomic.Int64)
	}
	for _, tg := range targets {
		for fi, f := range tg.p.Layout.Files {
			if tg.files[fi] != nil {
				done.Add(int64(len(f.Header))) // headers count as done
			}
		}
	}
	ready := newJobQueue()
	c := newCache(o.window, ready)
	defer c.unhookAll()
	c.mu.Lock()
	for _, fp := range fps {
		for i, t := range fp.c.Tensors {
			k := weft.ReaderKey(t.Data)
			if k == nil {
				continue
			}
			ds := c.state(k)
			if c.hook(ds, t.Data) {
				ds.fps = append(ds.fps, fpRef{fp, i})
			}
		}
	}
	c.mu.Unlock()
	adviseSequential(targets)

	var firstErr error
	var errOnce sync.Once
	fail := func(err error) {
		errOnce.Do(func() {
			firstErr = err
			cancel()
			c.mu.Lock()
			c.cond.Broadcast()
			c.mu.Unlock()
		})
	}
	var remaining atomic.Int64 // groups not done
	remaining.Store(ngroups)
	// I/O: load entries in order.
	loads := make(chan *entry, 1024)
	var iowg sync.WaitGroup
	for w := 0; w < ioDepth; w++ {
		iowg.Add(1)
		go func() {
			defer iowg.Done()
			for e := range loads {
				// A failed read is reported by the job that reads the entry, which names
				// the tensor.
				c.mu.Lock()
				if e.state == entryNew {
					c.load(e)
				}
				c.mu.Unlock()
			}
		}()
	}
	// The planner: entries of each group, in order, within the window.
	var planwg sync.WaitGroup
	planwg.Add(1)
	go func() {
		defer planwg.Done()
		defer close(loads)
		for _, st := range strs {
			for ch := int64(0); ch < st.chunks; ch++ {
				if ctx.Err() != nil {
					return
				}
				g := st.group(ch)
				if len(g.jobs) == 0 {
					c.mu.Lock()
					c.active++
					c.groupDone(g)
					c.mu.Unlock()
					if remaining.Add(-1) == 0 {
						ready.close()
					}
					continue
				}
				for _, e := range c.plan(ctx, g, o.maxActive()) {
					select {
					case loads <- e:
					case <-ctx.Done():
						return
					}
				}
			}
		}
	}()
	// The flusher starts the write-back of outputs as the workers write them.
	flush := make(chan *os.File, 16)
	var flushwg sync.WaitGroup
	flushwg.Add(1)
	go func() {
		defer flushwg.Done()
		for f := range flush {
			startWriteback(f)
		}
	}()
	defer func() { close(flush); flushwg.Wait() }()
	if ngroups == 0 {
		ready.close()
	}
	var wg sync.WaitGroup
	for w := 0; w < o.threads; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var bp *[]byte
			for {
				j := ready.pop()
				if j == nil {
					return
				}
				if ctx.Err() == nil {
					if bp == nil || int64(cap(*bp)) < j.n {
						bp = new([]byte)
						*bp = make([]byte, j.n)
					}
					buf := (*bp)[:j.n]
					if err := readFull(j.t, buf, j.off); err != nil {
						fail(err)
					} else {
						for _, d := range j.dests {
							if _, err := d.f.WriteAt(buf, d.off); err != nil {
								var pe *os.PathError
								if errors.As(err, &pe) {
									err = pe.Err // the path in it is the temporary file's
								}
								fail(fmt.Errorf("writing %s: %w (nothing was written)", d.name, err))
								break
							}
							done.Add(j.n)
							d.w.wrote(j.n, flush)
						}
					}
				}
				c.mu.Lock()
				j.g.left--
				last := j.g.left == 0
				if last {
					c.groupDone(j.g)
				}
				c.mu.Unlock()
				if last && remaining.Add(-1) == 0 {
					ready.close()
				}
			}
		}()
	}
	// On failure or cancellation the planner stops; groups it never released are counted
	// down here so that the workers end.
	go func() {
		<-ctx.Done()
		ready.close()
		c.mu.Lock()
		c.cond.Broadcast() // a planner waiting for room
		c.mu.Unlock()
	}()
	planwg.Wait()
	iowg.Wait()
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}

// readFull reads len(buf) bytes of t at off, through the cache when it holds them.
func readFull(t *weft.Tensor, buf []byte, off int64) error {
	n, err := readhook.ReadAt(t.Data, buf, off)
	if n == len(buf) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	if t.File != "" {
		return fmt.Errorf("%s: tensor %q: reading bytes %d-%d: %w", t.File, t.Name, off, off+int64(len(buf)), err)
	}
	// A computed tensor's error names the input it read, and that input's tensor, which
	// is often the same name: say it once.
	if strings.Contains(err.Error(), fmt.Sprintf("tensor %q", t.Name)) {
		return err
	}
	return fmt.Errorf("tensor %q: %w", t.Name, err)
}

// Ticker calls progress(done, total) every 200 ms from its own goroutine until the returned
// stop function is first called (which waits for the goroutine to end). A nil progress does
// nothing.
func Ticker(progress func(done, total int64), done *atomic.Int64, total int64) (stop func()) {
	if progress == nil {
		return func() {}
	}
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
				progress(done.Load(), total)
			case <-quit:
				return
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(quit); wg.Wait() }) }
}
