// Package verify re-reads a checkpoint end to end and checks it: its structure (the format
// readers validate headers, offsets, sizes and shard indexes when they open it), every byte
// of every tensor (read in chunks, so truncation and I/O errors surface), NaN and Inf counts
// of every floating-point or decodable quantized tensor, the JSON side files, and how it was
// made: when the checkpoint records its provenance, the recorded steps are replayed with
// each op's own planning (ops.Build, through the op registry) from the recorded inputs, and
// the result is compared with the checkpoint: every tensor's type and shape, the bytes of a
// sample of rows of every tensor (every row with Full), the key-values or metadata, and the
// side files. A checkpoint without provenance, a plain rewrite, is compared tensor by
// tensor, every byte, with the input it is given.
//
// Memory is bounded by the number of workers times the chunk size, whatever the model's
// size; replaying reads the rows it compares (and the reductions an op needs, such as
// slerp's norms, once per tensor).
package verify

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/ckpt"
	"github.com/weft-ml/weft/codec"
)

// DefaultSamples is the number of elements recomputed per tensor when Options.Samples is 0.
const DefaultSamples = 1000

// Options control a verification.
type Options struct {
	// Inputs are paths of the checkpoints (and plain files) the verified one was made from.
	// They are matched to the recorded inputs by header hash and data fingerprint (plain
	// files by SHA-256), by name first when several match. Recorded inputs not given here
	// are looked for beside the checkpoint under their recorded base names. A checkpoint
	// without provenance is compared with the one input given here.
	Inputs []string
	// Samples is the number of elements of each tensor compared with the replay, in whole
	// rows (0: DefaultSamples; a tensor with fewer elements is compared whole). A plain
	// rewrite (no provenance) is compared whole.
	Samples int
	// Full compares every row of every tensor.
	Full bool
	// StructureOnly skips the replay: the checkpoint is checked on its own, and missing
	// recorded inputs are not an error.
	StructureOnly bool
	// Threads is the number of workers reading tensors (0: all cores).
	Threads int
	// ChunkBytes bounds the bytes one worker reads at once (0: 4 MiB).
	ChunkBytes int64
	// AllowNonFinite reports NaN and Inf values without counting them as problems.
	AllowNonFinite bool
	// Progress, when set, is called from one goroutine with the tensor bytes read so far.
	Progress func(done, total int64)
	// Open opens the checkpoint and its inputs, local or remote (nil: ckpt.Open, which reads
	// remote names with the client configured from the environment).
	Open func(path string) (*weft.Checkpoint, error)
}

// open opens a checkpoint with opts.Open.
func (o *Options) open(path string) (*weft.Checkpoint, error) {
	if o.Open != nil {
		return o.Open(path)
	}
	return ckpt.Open(path)
}

// TensorReport is what verification found in one tensor.
type TensorReport struct {
	Name  string  `json:"name"`
	DType string  `json:"dtype"`
	Shape []int64 `json:"shape"`
	Bytes int64   `json:"bytes"`
	// Read is the number of bytes read back (Bytes unless reading failed).
	Read int64 `json:"read"`
	// Decoded reports whether the values were decoded (floating-point types, and quantized
	// types weft can decode), so that NaN and Inf counts mean something.
	Decoded bool  `json:"decoded"`
	NaN     int64 `json:"nan"`
	Inf     int64 `json:"inf"`
	// Recomputed is the number of elements compared with the replay (or the input of a
	// plain rewrite); Mismatches how many of them disagree with the checkpoint, the first
	// described by FirstMismatch.
	Recomputed    int64  `json:"recomputed"`
	Mismatches    int64  `json:"mismatches"`
	FirstMismatch string `json:"first_mismatch,omitempty"`
	// How says what the tensor was compared with, or why it was not.
	How string `json:"how,omitempty"`
	// Problems lists what is wrong with the tensor; empty means it is fine.
	Problems []string `json:"problems,omitempty"`
}

// SideFileReport is the check of one side file.
type SideFileReport struct {
	Name    string `json:"name"`
	Checked string `json:"checked"`
	Problem string `json:"problem,omitempty"`
}

// InputReport is one recorded input of a checkpoint with provenance.
type InputReport struct {
	Role       string `json:"role"`
	Name       string `json:"name"`
	Format     string `json:"format,omitempty"`
	HeaderHash string `json:"header_sha256,omitempty"`
	// Path is where the input was found ("" if it was not).
	Path string `json:"path,omitempty"`
	// Status is "matched", "missing", "hash mismatch" or "given".
	Status string `json:"status"`
}

// StepReport is one recorded step.
type StepReport struct {
	Op     string `json:"op"`
	Params string `json:"params,omitempty"`
	Seed   *int64 `json:"seed,omitempty"`
	Format string `json:"format,omitempty"`
}

// ProvenanceReport describes the checkpoint's record of how it was made and whether it
// could be checked.
type ProvenanceReport struct {
	// Op, Params and Seed are the last step's.
	Op      string       `json:"op"`
	Version string       `json:"weft_version,omitempty"`
	Params  string       `json:"params,omitempty"`
	Seed    string       `json:"seed,omitempty"`
	Steps   []StepReport `json:"steps,omitempty"`
	// Legacy reports a single-step record of an older weft version.
	Legacy bool          `json:"legacy,omitempty"`
	Inputs []InputReport `json:"inputs"`
	// Verified reports whether the replay (or the input of a plain rewrite) was compared
	// with the checkpoint.
	Verified bool `json:"verified"`
	// Note says why the record could not be checked, when it could not.
	Note string `json:"note,omitempty"`
}

// Report is the result of Verify.
type Report struct {
	Path       string            `json:"path"`
	Format     weft.Format       `json:"format"`
	Files      []string          `json:"files"`
	HeaderHash string            `json:"header_sha256"`
	Tensors    []TensorReport    `json:"tensors"`
	SideFiles  []SideFileReport  `json:"side_files,omitempty"`
	Provenance *ProvenanceReport `json:"provenance,omitempty"`
	// Problems lists what is wrong with the checkpoint as a whole; Warnings what could not
	// be checked or looks unusual without being wrong.
	Problems []string `json:"problems,omitempty"`
	Warnings []string `json:"warnings,omitempty"`
	// BytesRead is the number of tensor bytes read back.
	BytesRead int64 `json:"bytes_read"`
	OK        bool  `json:"ok"`
}

// ProblemCount returns the number of problems in the report: the checkpoint's and every
// tensor's and side file's.
func (r *Report) ProblemCount() int {
	n := len(r.Problems)
	for _, t := range r.Tensors {
		n += len(t.Problems)
	}
	for _, s := range r.SideFiles {
		if s.Problem != "" {
			n++
		}
	}
	return n
}

// Verify opens the checkpoint at path and checks it end to end (see the package comment).
// It returns an error only when the checkpoint cannot be opened at all (which the readers
// refuse with an error naming the file and the problem) or ctx is cancelled; everything
// else it finds is in the report, whose OK field says whether anything is wrong.
func Verify(ctx context.Context, path string, opts Options) (*Report, error) {
	c, err := opts.open(path)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return Checkpoint(ctx, c, opts)
}

// Checkpoint verifies an opened checkpoint; see Verify. c.Path is where recorded inputs are
// looked for (beside it).
func Checkpoint(ctx context.Context, c *weft.Checkpoint, opts Options) (*Report, error) {
	r := &Report{Path: c.Path, Format: c.Format, Files: c.Files, HeaderHash: c.HeaderHash}
	r.Tensors = make([]TensorReport, len(c.Tensors))
	for i, t := range c.Tensors {
		n, err := t.Size()
		tr := TensorReport{Name: t.Name, DType: t.DType.String(), Shape: append([]int64{}, t.Shape...), Bytes: n}
		if err != nil {
			tr.Problems = append(tr.Problems, err.Error())
		}
		r.Tensors[i] = tr
	}
	if err := stream(ctx, c, r, opts); err != nil {
		return nil, err
	}
	if !opts.AllowNonFinite {
		for i := range r.Tensors {
			tr := &r.Tensors[i]
			if tr.NaN > 0 || tr.Inf > 0 {
				tr.Problems = append(tr.Problems, fmt.Sprintf("%d NaN and %d Inf values", tr.NaN, tr.Inf))
			}
		}
	}
	r.SideFiles, r.Warnings = checkSideFiles(c, r.Warnings)
	if err := checkProvenance(ctx, c, r, opts); err != nil {
		return nil, err
	}
	r.OK = r.ProblemCount() == 0
	return r, nil
}

// where names a tensor's file for messages.
func where(t *weft.Tensor) string {
	if t.File != "" {
		return fmt.Sprintf("%s: tensor %q", filepath.Base(t.File), t.Name)
	}
	return fmt.Sprintf("tensor %q", t.Name)
}

// chunkJob is bytes [off, off+n) of tensor i.
type chunkJob struct {
	i      int
	off, n int64
}

// tensorStats accumulates one tensor's counts across workers.
type tensorStats struct {
	read, nan, inf atomic.Int64
	mu             sync.Mutex
	err            error
}

// decodable reports whether stream decodes dt's values to count NaN and Inf.
func decodable(dt weft.DType) bool {
	return (dt.Float() || dt.Quantized()) && codec.CanDecode(dt)
}

// workers returns the number of workers and the bytes one reads at once.
func (o Options) workers() (int, int64) {
	threads, chunk := o.Threads, o.ChunkBytes
	if threads <= 0 {
		threads = runtime.GOMAXPROCS(0)
	}
	if chunk <= 0 {
		chunk = 4 << 20
	}
	return threads, chunk
}

// stream reads every tensor's bytes in chunks, with a bounded pool of workers, counting
// NaN and Inf values of decodable tensors.
func stream(ctx context.Context, c *weft.Checkpoint, r *Report, opts Options) error {
	threads, chunk := opts.workers()
	stats := make([]tensorStats, len(c.Tensors))
	var total int64
	for i := range c.Tensors {
		if len(r.Tensors[i].Problems) == 0 {
			total += r.Tensors[i].Bytes
		}
	}
	var done atomic.Int64
	stopProgress := ckpt.Ticker(opts.Progress, &done, total)
	pool(ctx, threads, func(send func(chunkJob) bool) {
		for i, t := range c.Tensors {
			if len(r.Tensors[i].Problems) > 0 {
				continue
			}
			size := r.Tensors[i].Bytes
			bb := t.DType.BlockBytes()
			step := max(bb, chunk/bb*bb)
			for off := int64(0); off < size; off += step {
				if !send(chunkJob{i: i, off: off, n: min(step, size-off)}) {
					return
				}
			}
		}
	}, func() func(chunkJob) {
		var buf []byte
		var vals []float32
		var vals64 []float64
		return func(j chunkJob) {
			st := &stats[j.i]
			st.mu.Lock()
			failed := st.err != nil
			st.mu.Unlock()
			if failed || ctx.Err() != nil {
				return
			}
			t := c.Tensors[j.i]
			if int64(cap(buf)) < j.n {
				buf = make([]byte, j.n)
			}
			b := buf[:j.n]
			if err := readFull(t, b, j.off); err != nil {
				st.mu.Lock()
				if st.err == nil {
					st.err = err
				}
				st.mu.Unlock()
				return
			}
			st.read.Add(j.n)
			done.Add(j.n)
			if !decodable(t.DType) {
				return
			}
			// Decode in sub-chunks of whole blocks to keep the float buffer small.
			bb := t.DType.BlockBytes()
			bs := t.DType.BlockSize()
			step := max(1, (64<<10)/bs) * bb
			for o := int64(0); o < j.n; o += step {
				p := b[o:min(j.n, o+step)]
				ne := int64(len(p)) / bb * bs
				var nan, inf int64
				if t.DType == weft.F64 {
					if int64(cap(vals64)) < ne {
						vals64 = make([]float64, ne)
					}
					v := vals64[:ne]
					if err := codec.DecodeF64(t.DType, p, v); err != nil {
						st.mu.Lock()
						st.err = fmt.Errorf("%s: decoding: %v", where(t), err)
						st.mu.Unlock()
						break
					}
					for _, x := range v {
						if x != x {
							nan++
						} else if math.IsInf(x, 0) {
							inf++
						}
					}
				} else {
					if int64(cap(vals)) < ne {
						vals = make([]float32, ne)
					}
					v := vals[:ne]
					if err := codec.Decode(t.DType, p, v); err != nil {
						st.mu.Lock()
						st.err = fmt.Errorf("%s: decoding: %v", where(t), err)
						st.mu.Unlock()
						break
					}
					for _, x := range v {
						if x != x {
							nan++
						} else if x > math.MaxFloat32 || x < -math.MaxFloat32 {
							inf++
						}
					}
				}
				st.nan.Add(nan)
				st.inf.Add(inf)
			}
		}
	})
	stopProgress()
	if err := ctx.Err(); err != nil {
		return err
	}
	if opts.Progress != nil {
		opts.Progress(total, total)
	}
	for i := range stats {
		tr := &r.Tensors[i]
		tr.Read = stats[i].read.Load()
		tr.NaN = stats[i].nan.Load()
		tr.Inf = stats[i].inf.Load()
		tr.Decoded = decodable(c.Tensors[i].DType) && len(tr.Problems) == 0
		r.BytesRead += tr.Read
		if err := stats[i].err; err != nil {
			tr.Problems = append(tr.Problems, err.Error())
			tr.Decoded = false
		}
	}
	return nil
}

// pool runs jobs on threads workers: feed sends the jobs (send reports false once ctx is
// done, and feed should stop), newWorker makes one worker's function, which holds its own
// buffers. It returns when every job sent is done.
func pool[J any](ctx context.Context, threads int, feed func(send func(J) bool), newWorker func() func(J)) {
	ch := make(chan J, threads*2)
	var wg sync.WaitGroup
	for w := 0; w < threads; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			work := newWorker()
			for j := range ch {
				if ctx.Err() == nil {
					work(j)
				}
			}
		}()
	}
	feed(func(j J) bool {
		select {
		case ch <- j:
			return true
		case <-ctx.Done():
			return false
		}
	})
	close(ch)
	wg.Wait()
}

// readFull fills buf with bytes [off, off+len(buf)) of t, naming the tensor, the file and
// the range in errors.
func readFull(t *weft.Tensor, buf []byte, off int64) error {
	n, err := t.Data.ReadAt(buf, off)
	if n == len(buf) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("%s: reading bytes %d-%d: got %d bytes: %v (truncated or unreadable file)", where(t), off, off+int64(len(buf)), n, err)
}
