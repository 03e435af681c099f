package ckpt

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weft-ml/weft"
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

// job is one chunk of one tensor: bytes [off, off+n) of the tensor's data, written at
// dst+off in file f.
type job struct {
	t      *weft.Tensor
	off, n int64
	f      *os.File
	dst    int64
	name   string // the output file's final name, for messages
}

// rowAligned reports whether a tensor's data is computed a row at a time; everything else
// (file sections, gathered views) is copied in chunks of bytes.
func rowAligned(t *weft.Tensor) bool {
	r, ok := t.Data.(weft.RowAligned)
	return ok && r.RowAligned()
}

func copyTensors(ctx context.Context, c *weft.Checkpoint, p *Plan, files []*os.File, opts WriteOptions) error {
	threads := opts.Threads
	if threads <= 0 {
		threads = runtime.GOMAXPROCS(0)
	}
	chunkBytes := opts.ChunkBytes
	if chunkBytes <= 0 {
		chunkBytes = 4 << 20
	}
	chunkElems := opts.ChunkElems
	if chunkElems <= 0 {
		chunkElems = 256 << 10
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	jobs := make(chan job, threads*2)
	var done atomic.Int64
	var firstErr error
	var errOnce sync.Once
	fail := func(err error) {
		errOnce.Do(func() { firstErr = err; cancel() })
	}
	var wg sync.WaitGroup
	var bufPool sync.Pool
	for w := 0; w < threads; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				if ctx.Err() != nil {
					continue
				}
				var buf []byte
				if b, ok := bufPool.Get().(*[]byte); ok && int64(cap(*b)) >= j.n {
					buf = (*b)[:j.n]
				} else {
					buf = make([]byte, j.n)
				}
				if err := readFull(j.t, buf, j.off); err != nil {
					fail(err)
				} else if _, err := j.f.WriteAt(buf, j.dst+j.off); err != nil {
					var pe *os.PathError
					if errors.As(err, &pe) {
						err = pe.Err // the path in it is the temporary file's
					}
					fail(fmt.Errorf("writing %s: %w (nothing was written)", j.name, err))
				} else {
					done.Add(j.n)
				}
				bufPool.Put(&buf)
			}
		}()
	}
	stopProgress := Ticker(opts.Progress, &done, p.Total)
	// Headers count as done.
	for _, f := range p.Layout.Files {
		done.Add(int64(len(f.Header)))
	}
feed:
	for i, t := range c.Tensors {
		size := p.Infos[i].MustSize()
		if size == 0 {
			continue
		}
		place := p.Layout.Places[i]
		var step int64
		if !rowAligned(t) {
			step = chunkBytes
		} else {
			rb := t.RowBytes()
			rows := max(1, chunkElems/max(1, t.RowLen()))
			step = rows * rb
		}
		for off := int64(0); off < size; off += step {
			select {
			case jobs <- job{t: t, off: off, n: min(step, size-off), f: files[place.File], dst: place.Offset, name: filepath.Join(p.Dir, p.Layout.Files[place.File].Name)}:
			case <-ctx.Done():
				break feed
			}
		}
	}
	close(jobs)
	wg.Wait()
	stopProgress()
	if firstErr != nil {
		return firstErr
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if opts.Progress != nil {
		opts.Progress(p.Total, p.Total)
	}
	return nil
}

func readFull(t *weft.Tensor, buf []byte, off int64) error {
	n, err := t.Data.ReadAt(buf, off)
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
// stop function is called (which waits for the goroutine to end). A nil progress does nothing.
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
	return func() { close(quit); wg.Wait() }
}
