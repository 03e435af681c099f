package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/arch"
	"github.com/weft-ml/weft/ckpt"
	"github.com/weft-ml/weft/gguf"
	"github.com/weft-ml/weft/imatrix"
)

// childEnv makes the test binary run a weft command line as a child process (see
// TestMain), so that a benchmark can read the command's own peak RSS.
const childEnv = "WEFT_TEST_RUN_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		os.Exit(run(context.Background(), os.Args[indexOf(os.Args, "--")+1:], os.Stdout, os.Stderr, false))
	}
	os.Exit(m.Run())
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

// runChild runs a weft command line in a child process and returns its wall time, its CPU
// time (user and system) and its peak resident set size.
func runChild(b *testing.B, args ...string) (time.Duration, time.Duration, int64) {
	b.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"-test.run=^$", "--"}, args...)...)
	cmd.Env = append(os.Environ(), childEnv+"=1")
	cmd.Stderr = os.Stderr
	t0 := time.Now()
	if err := cmd.Run(); err != nil {
		b.Fatalf("weft %v: %v", args, err)
	}
	d := time.Since(t0)
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	return d, cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime(), ru.Maxrss * 1024 // Linux reports KiB
}

// plainCopy copies src to dst through a 4 MiB buffer and syncs: the I/O floor.
func plainCopy(b *testing.B, src, dst string) time.Duration {
	b.Helper()
	t0 := time.Now()
	in, err := os.Open(src)
	if err != nil {
		b.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.CopyBuffer(out, in, make([]byte, 4<<20)); err != nil {
		b.Fatal(err)
	}
	if err := out.Sync(); err != nil {
		b.Fatal(err)
	}
	out.Close()
	return time.Since(t0)
}

// writeImatrix writes an importance matrix for the quantizable tensors of a GGUF model
// (token_embd and output aside, as llama-imatrix leaves them) in llama-imatrix's GGUF
// format, with deterministic positive weights.
func writeImatrix(b *testing.B, model, path string) {
	b.Helper()
	c, err := ckpt.Open(model)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	var infos []weft.TensorInfo
	var vals [][]float32
	for _, t := range c.Tensors {
		if !arch.Quantizable(t.TensorInfo, false) || t.Name == "output.weight" || arch.MixTokenEmbedding(t.Name) {
			continue
		}
		n := t.RowLen()
		w := make([]float32, n)
		for i := range w {
			w[i] = 20 * float32(0.5+math.Abs(math.Sin(float64(i)*0.37+float64(len(infos)))))
		}
		infos = append(infos, weft.TensorInfo{Name: t.Name + imatrix.SuffixSums, DType: weft.F32, Shape: []int64{n}},
			weft.TensorInfo{Name: t.Name + imatrix.SuffixCounts, DType: weft.F32, Shape: []int64{1}})
		vals = append(vals, w, []float32{20})
	}
	kvs := []weft.KV{{Key: "general.type", Value: "imatrix"}, {Key: imatrix.KeyDatasets, Value: []string{"synthetic"}},
		{Key: imatrix.KeyChunkCount, Value: uint32(20)}, {Key: imatrix.KeyChunkSize, Value: uint32(512)}}
	lay, err := gguf.Layout(kvs, infos, gguf.LayoutOptions{Name: filepath.Base(path)})
	if err != nil {
		b.Fatal(err)
	}
	f := lay.Files[0]
	buf := make([]byte, f.Size)
	copy(buf, f.Header)
	for i, p := range lay.Places {
		for j, v := range vals[i] {
			binary.LittleEndian.PutUint32(buf[p.Offset+int64(4*j):], math.Float32bits(v))
		}
	}
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkQuantizeMixtures quantizes a generated F16 GGUF (WEFT_BENCH_GB, default 1) to
// Q4_K_M and IQ4_XS with an importance matrix, each weft run a child process with its peak
// RSS, beside a plain copy of the same file in the same run. WEFT_BENCH_DIR keeps the
// generated inputs between runs.
//
//	go test ./cmd/weft/ -run '^$' -bench QuantizeMixtures -benchtime 1x -timeout 0
func BenchmarkQuantizeMixtures(b *testing.B) {
	dir := os.Getenv("WEFT_BENCH_DIR")
	if dir == "" {
		dir = b.TempDir()
	}
	gb := 1.0
	if s := os.Getenv("WEFT_BENCH_GB"); s != "" {
		var err error
		if gb, err = strconv.ParseFloat(s, 64); err != nil {
			b.Fatal(err)
		}
	}
	model := filepath.Join(dir, fmt.Sprintf("mix-bench-%gg-f16.gguf", gb))
	if _, err := os.Stat(model); err != nil {
		if code := run(context.Background(), []string{"synth", "--size", fmt.Sprintf("%dMB", int(gb*1000)), "--dtype", "f16", "-o", model}, io.Discard, os.Stderr, false); code != 0 {
			b.Fatal("synth failed")
		}
	}
	imat := filepath.Join(dir, "mix-bench-imatrix.gguf")
	writeImatrix(b, model, imat)
	out := filepath.Join(dir, "mix-bench-out.gguf")
	defer os.Remove(out)
	st, _ := os.Stat(model)
	plainCopy(b, model, out) // warm the page cache
	for i := 0; i < b.N; i++ {
		cp := plainCopy(b, model, out)
		b.ReportMetric(cp.Seconds(), "copy-s")
		for _, ft := range []string{"Q4_K_M", "IQ4_XS"} {
			d, cpu, rss := runChild(b, "convert", model, "-o", out, "--force", "--quiet", "--threads", "2", "--dtype", ft, "--imatrix", imat)
			b.ReportMetric(d.Seconds(), ft+"-s")
			b.ReportMetric(cpu.Seconds(), ft+"-cpu-s")
			b.ReportMetric(float64(rss)/(1<<20), ft+"-rss-MiB")
			b.ReportMetric(d.Seconds()/cp.Seconds(), ft+"-x-copy")
		}
		d, cpu, rss := runChild(b, "convert", model, "-o", out, "--force", "--quiet", "--threads", "2")
		b.ReportMetric(d.Seconds(), "rewrite-s")
		b.ReportMetric(cpu.Seconds(), "rewrite-cpu-s")
		b.ReportMetric(float64(rss)/(1<<20), "rewrite-rss-MiB")
	}
	b.ReportMetric(float64(st.Size())/(1<<30), "input-GiB")
}
