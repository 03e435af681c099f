// Package bench measures weft as its users run it: the weft binary as a child process on
// synthetic checkpoints of a chosen size, its wall time and peak RSS, beside a baseline
// measured in the same run (an "I/O floor": reading the inputs and writing as many output
// bytes through a 4 MiB buffer, then fsync). The benchmarks are in the package's test files
// (make bench); this file holds the helpers they share, for new benchmarks to use:
//
//	w := bench.Run(b, "blend", base, tuned, "-o", out, "--alpha", "0.5")
//	f := bench.Floor(b, bench.Files(base, tuned), bench.Size(out), 1)
//	bench.Row(b, "blend bf16 at 0.5", "2 x "+bench.GiB(bench.Size(base)), 0, w, "I/O floor", f)
//
// Environment: WEFT_BENCH_DIR is the scratch directory (default $TMPDIR/weft-bench; the
// generated inputs are kept there and reused by later runs), WEFT_BENCH_GB and
// WEFT_BENCH_BLEND_GB the sizes (comma-separated GiB, see the benchmarks), WEFT_BIN the
// binary to measure (default: built from this checkout).
package bench

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/weft-ml/weft/ckpt"
	"github.com/weft-ml/weft/internal/synth"
)

// BufSize is the floor's user-space buffer.
const BufSize = 4 << 20

// Measure is one measured run: its wall time, its CPU time (user + system), and the peak
// resident set size of the process that did the work (0 for the floor, which runs inside
// the benchmark process). On a machine shared with other jobs the wall time stretches with
// the load; the CPU time much less.
type Measure struct {
	Wall   time.Duration
	CPU    time.Duration
	MaxRSS int64 // bytes
}

// Scratch returns the scratch directory, creating it.
func Scratch(b testing.TB) string {
	b.Helper()
	dir := os.Getenv("WEFT_BENCH_DIR")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "weft-bench")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	return dir
}

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// Binary returns the path of the weft binary to measure: $WEFT_BIN (make bench sets it to
// the binary it builds), or one built from this checkout into the scratch directory, once
// per process.
func Binary(b testing.TB) string {
	b.Helper()
	binOnce.Do(func() {
		if binPath = os.Getenv("WEFT_BIN"); binPath != "" {
			return
		}
		binPath = filepath.Join(Scratch(b), "weft")
		gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
		out, err := exec.Command(gobin, "build", "-o", binPath, "github.com/weft-ml/weft/cmd/weft").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("building weft: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		b.Fatal(binErr)
	}
	return binPath
}

// Run runs the weft binary with args and returns its wall time and peak RSS (from the
// child's rusage). A failing run fails the benchmark with weft's output.
func Run(b testing.TB, args ...string) Measure {
	b.Helper()
	cmd := exec.Command(Binary(b), args...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	wall := time.Since(start)
	if err != nil {
		b.Fatalf("weft %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	m := Measure{Wall: wall, CPU: cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		m.MaxRSS = int64(ru.Maxrss) << 10 // Linux reports ru_maxrss in KiB
	}
	return m
}

// selfCPU returns this process's CPU time so far (user + system).
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Files lists the regular files of the given paths: a file is itself, a directory every
// file under it, sorted.
func Files(paths ...string) []string {
	var out []string
	for _, p := range paths {
		filepath.WalkDir(p, func(q string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				out = append(out, q)
			}
			return nil
		})
	}
	return out
}

// Size returns the total size in bytes of the files of the given paths.
func Size(paths ...string) int64 {
	var n int64
	for _, f := range Files(paths...) {
		if st, err := os.Stat(f); err == nil {
			n += st.Size()
		}
	}
	return n
}

// GiB formats a byte count as the tables do: "2 GiB", "0.5 GiB".
func GiB(n int64) string {
	return strconv.FormatFloat(float64(n)/(1<<30), 'g', 3, 64) + " GiB"
}

// Warm reads every file of the given paths twice, so that the page cache holds what fits
// of them before a measurement (two plain copies, as the figures in BENCHMARKS.md were
// taken).
func Warm(b testing.TB, paths ...string) {
	b.Helper()
	buf := make([]byte, BufSize)
	for i := 0; i < 2; i++ {
		for _, f := range Files(paths...) {
			readAll(b, f, buf)
		}
	}
}

func readAll(b testing.TB, path string, buf []byte) int64 {
	b.Helper()
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	n, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{f}, buf)
	if err != nil {
		b.Fatal(err)
	}
	return n
}

// Floor measures the I/O floor of a job: read every file of inputs through a 4 MiB buffer,
// then write outBytes to each of outputs new files through the same buffer and fsync each.
// A sweep that writes five outputs from one read is Floor(b, inputs, size, 5); five
// separate runs are five times Floor(b, inputs, size, 1). The outputs are removed.
func Floor(b testing.TB, inputs []string, outBytes int64, outputs int) Measure {
	b.Helper()
	dir, err := os.MkdirTemp(Scratch(b), "floor-")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(dir)
	buf := make([]byte, BufSize)
	for i := range buf {
		buf[i] = byte(i*7 + 1) // not zeros: nothing may special-case them
	}
	start, cpu := time.Now(), selfCPU()
	for _, f := range inputs {
		readAll(b, f, buf)
	}
	for o := 0; o < outputs; o++ {
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("out%d", o)))
		if err != nil {
			b.Fatal(err)
		}
		for left := outBytes; left > 0; {
			n := min(left, int64(len(buf)))
			if _, err := f.Write(buf[:n]); err != nil {
				b.Fatal(err)
			}
			left -= n
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
		if err := f.Close(); err != nil {
			b.Fatal(err)
		}
	}
	return Measure{Wall: time.Since(start), CPU: selfCPU() - cpu}
}

// Synth returns a synthetic Llama-shaped checkpoint of about gib GiB, written by
// `weft synth --size` (sharded at 2 GB, as Hugging Face shards) in the scratch directory:
// seed selects the weights, related (non-zero) makes a "tuned" model of that base. It is
// generated once and reused while its parameters stay the same.
func Synth(b testing.TB, gib float64, dtype string, seed, related uint64) string {
	b.Helper()
	name := fmt.Sprintf("synth-%gGiB-%s-seed%d-rel%d", gib, dtype, seed, related)
	return cached(b, name, func(path string) {
		args := []string{"synth", "-o", path, "--size", fmt.Sprintf("%dB", int64(gib*(1<<30))), "--dtype", dtype,
			"--seed", strconv.FormatUint(seed, 10), "--max-shard-size", "2GB", "--force"}
		if related != 0 {
			args = append(args, "--related-to", strconv.FormatUint(related, 10))
		}
		Run(b, args...)
	})
}

// Pair returns a synthetic base (seed 1) and tuned (seed 2, related to 1) BF16 checkpoint
// of about gib GiB each.
func Pair(b testing.TB, gib float64) (base, tuned string) {
	return Synth(b, gib, "bf16", 1, 0), Synth(b, gib, "bf16", 2, 1)
}

// SynthSpec returns a checkpoint written from an internal/synth spec (shapes weft synth's
// flags do not reach, such as a GGUF of a chosen hidden size) at name in the scratch
// directory, generated once.
func SynthSpec(b testing.TB, s synth.Spec, name string) string {
	b.Helper()
	return cached(b, name, func(path string) {
		if err := ckpt.Write(context.Background(), s.Checkpoint(), path, ckpt.WriteOptions{Force: true}); err != nil {
			b.Fatal(err)
		}
	})
}

// cached returns the scratch path name, calling make to write it unless a marker says an
// earlier run finished writing it.
func cached(b testing.TB, name string, make func(path string)) string {
	b.Helper()
	path := filepath.Join(Scratch(b), name)
	done := path + ".done"
	if _, err := os.Stat(done); err == nil {
		return path
	}
	start := time.Now()
	make(path)
	if err := os.WriteFile(done, nil, 0o644); err != nil {
		b.Fatal(err)
	}
	fmt.Printf("# generated %s (%s) in %.1f s\n", name, GiB(Size(path)), time.Since(start).Seconds())
	return path
}

// Output returns a fresh output path name in the scratch directory (removing what an earlier
// run left there) and registers its removal at the end of the benchmark.
func Output(b testing.TB, name string) string {
	b.Helper()
	p := filepath.Join(Scratch(b), "out-"+name)
	os.RemoveAll(p)
	b.Cleanup(func() { os.RemoveAll(p) })
	return p
}

var headerOnce sync.Once

// Row prints one Markdown table row, | job | size | weft | baseline | ratio | CPU | peak RSS |
// (wall times, with throughput over bytes when bytes > 0; CPU times, weft's and the
// baseline's), and reports weft's wall time (as ns/op), the ratio, weft's CPU seconds and
// its peak RSS as benchmark metrics. The first row of a run is preceded by the date, Go
// version, CPU count and load average.
func Row(b *testing.B, job, size string, bytes int64, w Measure, baseline string, f Measure) {
	b.Helper()
	headerOnce.Do(func() {
		load, _ := os.ReadFile("/proc/loadavg")
		fmt.Printf("# %s, %s, %d CPUs, load average %s\n", time.Now().Format("2006-01-02"), runtime.Version(), runtime.NumCPU(), strings.Join(strings.Fields(string(load))[:3], " "))
		fmt.Println("| job | size | weft | baseline | ratio | CPU weft / baseline | peak RSS |")
		fmt.Println("| --- | --- | --- | --- | --- | --- | --- |")
	})
	rate := func(d time.Duration) string {
		if bytes <= 0 {
			return fmt.Sprintf("%.2f s", d.Seconds())
		}
		return fmt.Sprintf("%.2f s (%.0f MB/s)", d.Seconds(), float64(bytes)/1e6/d.Seconds())
	}
	ratio := w.Wall.Seconds() / f.Wall.Seconds()
	fmt.Printf("| %s | %s | %s | %s %s | %.2fx | %.2f s / %.2f s | %.1f MiB |\n", job, size, rate(w.Wall), baseline, rate(f.Wall), ratio, w.CPU.Seconds(), f.CPU.Seconds(), float64(w.MaxRSS)/(1<<20))
	b.ReportMetric(float64(w.Wall.Nanoseconds()), "ns/op")
	b.ReportMetric(ratio, "x-baseline")
	b.ReportMetric(w.CPU.Seconds(), "CPU-s")
	b.ReportMetric(float64(w.MaxRSS)/(1<<20), "MiB-peak-RSS")
}

// Sizes parses the comma-separated GiB sizes of an environment variable, or returns def.
func Sizes(b testing.TB, env string, def ...float64) []float64 {
	b.Helper()
	v := os.Getenv(env)
	if v == "" {
		return def
	}
	var out []float64
	for _, s := range strings.Split(v, ",") {
		f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil || f <= 0 {
			b.Fatalf("%s=%q: want comma-separated sizes in GiB, such as 2,8", env, v)
		}
		out = append(out, f)
	}
	return out
}
