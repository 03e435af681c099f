package enginebench

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Environment:
//
//	WEFT_BENCH_DIR     scratch directory (default $TMPDIR/weft-engine-bench); generated
//	                   inputs are kept and reused
//	WEFT_BIN           the weft binary to measure (default: built from this checkout)
//	WEFT_BIN_BEFORE    a second binary measured beside it (the engine before a change)
//	WEFT_BENCH_ROUNDS  rounds per figure (default 3; each figure is the median)
//	WEFT_BENCH_SIZES   the blend sizes, GiB per input, comma-separated (default 1,4); sizes
//	                   of 4 and more run from disk (inputs evicted from the page cache before
//	                   every run), smaller ones from the page cache
//	WEFT_BENCH_SWEEP_GB the sweep's input size (default 4)

// measure is one run: wall time, CPU time (user + system) and peak RSS.
type measure struct {
	wall, cpu time.Duration
	rss       int64
}

func scratch(b testing.TB) string {
	dir := os.Getenv("WEFT_BENCH_DIR")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "weft-engine-bench")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	return dir
}

// binary returns the weft binary to measure.
func binary(b testing.TB) string {
	if p := os.Getenv("WEFT_BIN"); p != "" {
		return p
	}
	p := filepath.Join(scratch(b), "weft-this")
	out, err := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", p, "github.com/weft-ml/weft/cmd/weft").CombinedOutput()
	if err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	return p
}

func rounds() int {
	if n, err := strconv.Atoi(os.Getenv("WEFT_BENCH_ROUNDS")); err == nil && n > 0 {
		return n
	}
	return 3
}

func sizes(env, def string) []int {
	s := os.Getenv(env)
	if s == "" {
		s = def
	}
	var out []int
	for _, f := range strings.Split(s, ",") {
		if n, err := strconv.Atoi(strings.TrimSpace(f)); err == nil && n > 0 {
			out = append(out, n)
		}
	}
	return out
}

// run runs a command to completion and measures it.
func run(b testing.TB, env []string, name string, args ...string) measure {
	b.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		b.Fatalf("%v: %v\n%s", cmd.Args, err, stderr.String())
	}
	m := measure{wall: time.Since(start)}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		m.cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		m.rss = ru.Maxrss * 1024
	}
	return m
}

// pair returns a generated base and a related tuned checkpoint of about gib GiB each.
func pair(b testing.TB, bin string, gib int, ext string) (string, string) {
	dir := scratch(b)
	base := filepath.Join(dir, fmt.Sprintf("base-%dg%s", gib, ext))
	tuned := filepath.Join(dir, fmt.Sprintf("tuned-%dg%s", gib, ext))
	size := fmt.Sprintf("%dGiB", gib)
	if _, err := os.Stat(base); err != nil {
		run(b, nil, bin, "synth", "--size", size, "--seed", "1", "-o", base)
	}
	if _, err := os.Stat(tuned); err != nil {
		run(b, nil, bin, "synth", "--size", size, "--seed", "2", "--related-to", "1", "-o", tuned)
	}
	return base, tuned
}

// files lists the regular files at path (a file, or the files of a directory).
func files(path string) []string {
	st, err := os.Stat(path)
	if err != nil {
		return nil
	}
	if !st.IsDir() {
		return []string{path}
	}
	var out []string
	ents, _ := os.ReadDir(path)
	for _, e := range ents {
		if e.Type().IsRegular() {
			out = append(out, filepath.Join(path, e.Name()))
		}
	}
	return out
}

// evict drops the files at paths from the page cache (they are clean: written and synced).
func evict(paths ...string) {
	for _, p := range paths {
		for _, f := range files(p) {
			if fh, err := os.Open(f); err == nil {
				_ = unix.Fadvise(int(fh.Fd()), 0, 0, unix.FADV_DONTNEED)
				fh.Close()
			}
		}
	}
}

// warm reads the files at paths into the page cache.
func warm(paths ...string) {
	buf := make([]byte, 4<<20)
	for _, p := range paths {
		for _, f := range files(p) {
			if fh, err := os.Open(f); err == nil {
				for {
					if _, err := fh.Read(buf); err != nil {
						break
					}
				}
				fh.Close()
			}
		}
	}
}

// floor reads every input file once (the inputs side by side, a 4 MiB buffer at a time) and
// writes outputs files of as many bytes as the first input (plain copies), then fsyncs them:
// the I/O a write of outputs outputs from those inputs cannot do without.
func floor(b testing.TB, dir string, outputs int, inputs ...string) measure {
	b.Helper()
	start := time.Now()
	var ins []*os.File
	for _, in := range inputs {
		for _, f := range files(in) {
			fh, err := os.Open(f)
			if err != nil {
				b.Fatal(err)
			}
			ins = append(ins, fh)
		}
	}
	var outs []*os.File
	for k := 0; k < outputs; k++ {
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("floor-%d", k)))
		if err != nil {
			b.Fatal(err)
		}
		outs = append(outs, f)
	}
	per := len(ins) / len(inputs)
	buf := make([]byte, 4<<20)
	for i := 0; i < per; i++ {
		for {
			var n int
			var err error
			for k := range inputs {
				n, err = io.ReadFull(ins[k*per+i], buf)
			}
			if n > 0 {
				for _, o := range outs {
					if _, err := o.Write(buf[:n]); err != nil {
						b.Fatal(err)
					}
				}
			}
			if err != nil {
				break
			}
		}
	}
	for _, o := range outs {
		if err := o.Sync(); err != nil {
			b.Fatal(err)
		}
		o.Close()
		os.Remove(o.Name())
	}
	for _, f := range ins {
		f.Close()
	}
	return measure{wall: time.Since(start)}
}

// median returns the run with the median wall time.
func median(ms []measure) measure {
	sort.Slice(ms, func(i, j int) bool { return ms[i].wall < ms[j].wall })
	return ms[len(ms)/2]
}

func row(job, sz string, m, base measure, baseName string) {
	fmt.Printf("| %s | %s | %.2f s (CPU %.2f s, RSS %.1f MiB) | %s %.2f s | %.2fx |\n", job, sz,
		m.wall.Seconds(), m.cpu.Seconds(), float64(m.rss)/(1<<20), baseName, base.wall.Seconds(), m.wall.Seconds()/base.wall.Seconds())
}

// BenchmarkBlend: weft blend of a BF16 pair at alpha 0.5 against the I/O floor (reading
// both inputs, writing one output, fsync), and against WEFT_BIN_BEFORE when set, the runs
// interleaved round by round.
func BenchmarkBlend(b *testing.B) {
	bin := binary(b)
	before := os.Getenv("WEFT_BIN_BEFORE")
	for _, gib := range sizes("WEFT_BENCH_SIZES", "1,4") {
		base, tuned := pair(b, bin, gib, ".safetensors")
		disk := gib >= 4
		dir := scratch(b)
		out := filepath.Join(dir, "blend-out.safetensors")
		var fl, now, was []measure
		prep := func() {
			os.Remove(out)
			if disk {
				evict(base, tuned)
			} else {
				warm(base, tuned)
			}
		}
		for r := 0; r < rounds(); r++ {
			prep()
			fl = append(fl, floor(b, dir, 1, base, tuned))
			prep()
			now = append(now, run(b, nil, bin, "blend", base, tuned, "--alpha", "0.5", "-o", out, "--quiet"))
			if before != "" {
				prep()
				was = append(was, run(b, nil, before, "blend", base, tuned, "--alpha", "0.5", "-o", out, "--quiet"))
			}
		}
		os.Remove(out)
		where := "warm"
		if disk {
			where = "disk"
		}
		sz := fmt.Sprintf("2 x %d GiB (%s)", gib, where)
		f := median(fl)
		row("blend bf16 at 0.5", sz, median(now), f, "I/O floor")
		if before != "" {
			row("blend bf16 at 0.5, engine before", sz, median(was), f, "I/O floor")
		}
	}
}

// BenchmarkSweep: a 5-alpha blend sweep of a BF16 pair from disk, written together by one
// command (weft blend --alpha 0.1,0.3,0.5,0.7,0.9 -o 'DIR/blend-{alpha}.safetensors', the
// outputs in lockstep from one read), against five separate weft blend runs and against the floor of reading both
// inputs once and writing five outputs (plain copies, fsync).
func BenchmarkSweep(b *testing.B) {
	bin := binary(b)
	gib := sizes("WEFT_BENCH_SWEEP_GB", "4")[0]
	base, tuned := pair(b, bin, gib, ".safetensors")
	dir := scratch(b)
	outDir := filepath.Join(dir, "sweep")
	alphas := []string{"0.1", "0.3", "0.5", "0.7", "0.9"}
	clean := func() {
		os.RemoveAll(outDir)
		os.MkdirAll(outDir, 0o755)
		evict(base, tuned)
	}
	var fl, many, sep []measure
	for r := 0; r < rounds(); r++ {
		clean()
		fl = append(fl, floor(b, outDir, len(alphas), base, tuned))
		clean()
		many = append(many, run(b, nil, bin, "blend", base, tuned, "--alpha", strings.Join(alphas, ","), "-o", filepath.Join(outDir, "blend-{alpha}.safetensors"), "--quiet"))
		clean()
		var s measure
		for _, a := range alphas {
			evict(base, tuned) // each run reads from disk, as runs on models larger than RAM do
			m := run(b, nil, bin, "blend", base, tuned, "--alpha", a, "-o", filepath.Join(outDir, "blend-"+a+".safetensors"), "--quiet")
			s.wall += m.wall
			s.cpu += m.cpu
			s.rss = max(s.rss, m.rss)
		}
		sep = append(sep, s)
	}
	os.RemoveAll(outDir)
	sz := fmt.Sprintf("2 x %d GiB, 5 alphas (disk)", gib)
	f := median(fl)
	row("sweep, one weft blend --alpha 0.1,...,0.9", sz, median(many), f, "floor (read once, write 5)")
	row("sweep, 5 separate weft blend (inputs evicted before each)", sz, median(sep), f, "floor (read once, write 5)")
}

// BenchmarkChain: blend of a BF16 GGUF pair straight to Q8_0 (one pass, --dtype q8_0) against
// blend to BF16 then convert to Q8_0 (two commands).
func BenchmarkChain(b *testing.B) {
	bin := binary(b)
	gib := sizes("WEFT_BENCH_CHAIN_GB", "1")[0]
	base, tuned := pair(b, bin, gib, ".gguf")
	dir := scratch(b)
	mid, out := filepath.Join(dir, "chain-mid.gguf"), filepath.Join(dir, "chain-out.gguf")
	var one, two []measure
	for r := 0; r < rounds(); r++ {
		os.Remove(out)
		warm(base, tuned)
		one = append(one, run(b, nil, bin, "blend", base, tuned, "--alpha", "0.5", "--dtype", "q8_0", "-o", out, "--quiet"))
		os.Remove(out)
		os.Remove(mid)
		warm(base, tuned)
		m1 := run(b, nil, bin, "blend", base, tuned, "--alpha", "0.5", "-o", mid, "--quiet")
		m2 := run(b, nil, bin, "convert", mid, "--dtype", "q8_0", "-o", out, "--quiet")
		two = append(two, measure{wall: m1.wall + m2.wall, cpu: m1.cpu + m2.cpu, rss: max(m1.rss, m2.rss)})
	}
	os.Remove(out)
	os.Remove(mid)
	row("blend -> q8_0, one pass", fmt.Sprintf("2 x %d GiB GGUF (warm)", gib), median(one), median(two), "blend, then convert")
}
