package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/internal/synth"
)

// BenchmarkMergeMethods times ties and dare (and the other sparsifying methods) against a
// linear blend of the same inputs in the same run, running the weft binary as a child process
// and reading its peak RSS from its rusage. The inputs are generated BF16 Llama-shaped
// checkpoints (a base and two tuned models of WEFT_BENCH_MERGE_GB GiB each, default 1) in
// WEFT_BENCH_DIR (default a temporary directory), read once to warm the page cache. "2x" jobs
// read the base and one tuned model, "3x" jobs all three. WEFT_BENCH_MERGE_ALL=1 adds
// breadcrumbs and della.
//
//	go test ./cmd/weft/ -run '^$' -bench MergeMethods -benchtime 1x
func BenchmarkMergeMethods(b *testing.B) {
	gb := 1.0
	if s := os.Getenv("WEFT_BENCH_MERGE_GB"); s != "" {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil || v <= 0 {
			b.Fatalf("WEFT_BENCH_MERGE_GB=%q", s)
		}
		gb = v
	}
	dir := os.Getenv("WEFT_BENCH_DIR")
	if dir == "" {
		dir = b.TempDir()
	}
	bin := filepath.Join(dir, "weft-bench")
	build := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	size := int64(gb * (1 << 30))
	paths := []string{filepath.Join(dir, "base"), filepath.Join(dir, "tuned1"), filepath.Join(dir, "tuned2")}
	for i, p := range paths {
		s := synth.Sized(size, weft.BF16, uint64(i+1))
		if i > 0 {
			s.Related = 1
		}
		s.MaxShardSize = 2 << 30
		if _, err := os.Stat(p); err == nil {
			continue // reuse inputs from an earlier run in WEFT_BENCH_DIR
		}
		if err := s.Write(context.Background(), p, false); err != nil {
			b.Fatal(err)
		}
	}
	for _, p := range paths {
		warm(b, p)
	}
	base, t1, t2 := paths[0], paths[1], paths[2]
	jobs := []struct {
		name string
		args []string
	}{
		{"linear 2x", []string{base, t1, "--alpha", "0.5"}},
		{"ties 2x", []string{base, t1, "--method", "ties", "--density", "0.5"}},
		{"dare_ties 2x", []string{base, t1, "--method", "dare_ties", "--density", "0.5", "--seed", "1"}},
		{"dare_linear 2x", []string{base, t1, "--method", "dare_linear", "--density", "0.5", "--seed", "1"}},
		{"linear 3x", []string{base, t1, t2, "--weights", "0.5,0.5"}},
		{"ties 3x", []string{base, t1, t2, "--method", "ties", "--density", "0.5"}},
		{"dare_ties 3x", []string{base, t1, t2, "--method", "dare_ties", "--density", "0.5", "--seed", "1"}},
	}
	if os.Getenv("WEFT_BENCH_MERGE_ALL") != "" {
		jobs = append(jobs, []struct {
			name string
			args []string
		}{
			{"breadcrumbs 2x", []string{base, t1, "--method", "breadcrumbs", "--density", "0.5", "--gamma", "0.01"}},
			{"della 2x", []string{base, t1, "--method", "della", "--density", "0.5", "--epsilon", "0.1", "--seed", "1"}},
		}...)
	}
	for i := 0; i < b.N; i++ {
		var linear [4]time.Duration
		for _, j := range jobs {
			out := filepath.Join(dir, "out")
			os.RemoveAll(out)
			args := append([]string{"blend"}, j.args...)
			args = append(args, "-o", out, "--quiet", "--force")
			cmd := exec.Command(bin, args...)
			cmd.Stderr = os.Stderr
			start := time.Now()
			if err := cmd.Run(); err != nil {
				b.Fatalf("%s: %v", j.name, err)
			}
			el := time.Since(start)
			ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
			rss := float64(ru.Maxrss) / 1024 // KiB to MiB
			cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
			ratio := ""
			switch {
			case j.name == "linear 2x":
				linear[2] = el
			case j.name == "linear 3x":
				linear[3] = el
			default:
				k := 2
				if j.name[len(j.name)-2:] == "3x" {
					k = 3
				}
				ratio = fmt.Sprintf("%.2fx linear", el.Seconds()/linear[k].Seconds())
			}
			b.Logf("%-16s %8.2f s wall  %8.2f s cpu  peak RSS %6.1f MiB  %s", j.name, el.Seconds(), cpu.Seconds(), rss, ratio)
			if rss > 256 {
				b.Errorf("%s: peak RSS %.1f MiB is over 256 MiB", j.name, rss)
			}
		}
		os.RemoveAll(filepath.Join(dir, "out"))
	}
}

// warm reads every file under p once.
func warm(b *testing.B, p string) {
	filepath.Walk(p, func(path string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		io.Copy(io.Discard, f)
		return nil
	})
}
