package remote_test

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weft-ml/weft/internal/hubtest"
)

// moduleRoot returns the directory holding go.mod.
func moduleRoot(tb testing.TB) string {
	dir, err := os.Getwd()
	if err != nil {
		tb.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			tb.Fatal("no go.mod above the test directory")
		}
		dir = parent
	}
}

// runWeft runs the weft binary and returns its wall time, peak RSS and CPU time.
func runWeft(tb testing.TB, bin string, env []string, args ...string) (time.Duration, int64, time.Duration) {
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	d := time.Since(start)
	if err != nil {
		tb.Fatalf("weft %v: %v\n%s", args, err, out)
	}
	ru, _ := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	var rss int64
	if ru != nil {
		rss = ru.Maxrss << 10 // KiB on Linux
	}
	return d, rss, cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
}

// BenchmarkBlendRemoteVsLocal blends two synthetic BF16 checkpoints (WEFT_BENCH_REMOTE_MB
// each, default 512, in 256 MB shards) with the weft binary twice per round: from local
// files, and from a Hub look-alike on loopback serving the same files (hf:// names). It
// reports the best time of each over the rounds (WEFT_BENCH_ROUNDS, default 3, the order
// alternating), their ratio, each run's peak RSS and how many bytes the server sent per
// input byte. WEFT_BENCH_DIR keeps the generated models between runs. The server runs in
// the benchmark's process, on the same cores as weft.
func BenchmarkBlendRemoteVsLocal(b *testing.B) {
	mb := envInt("WEFT_BENCH_REMOTE_MB", 512)
	rounds := envInt("WEFT_BENCH_ROUNDS", 3)
	scratch := os.Getenv("WEFT_BENCH_DIR")
	if scratch == "" {
		scratch = b.TempDir()
	}
	root := moduleRoot(b)
	bin := filepath.Join(b.TempDir(), "weft")
	gocmd, err := exec.LookPath("go")
	if err != nil {
		gocmd = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	build := exec.Command(gocmd, "build", "-o", bin, "./cmd/weft")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	dir := filepath.Join(scratch, fmt.Sprintf("remote-bench-%dMB", mb))
	base, tuned := filepath.Join(dir, "base"), filepath.Join(dir, "tuned")
	if _, err := os.Stat(filepath.Join(tuned, "config.json")); err != nil {
		size := fmt.Sprintf("%dMB", mb)
		runWeft(b, bin, nil, "synth", "-o", base, "--size", size, "--seed", "1", "--max-shard-size", "256MB", "--force")
		runWeft(b, bin, nil, "synth", "-o", tuned, "--size", size, "--seed", "2", "--related-to", "1", "--max-shard-size", "256MB", "--force")
	}
	srv := hubtest.New(b)
	rb := srv.AddRepo("bench/base")
	b.Logf("machine: %d CPUs; load average at start: %s", runtime.NumCPU(), loadavg())
	rb.AddDir(b, "", base)
	rt := srv.AddRepo("bench/tuned")
	rt.AddDir(b, "", tuned)
	var inputBytes int64
	for _, r := range []*hubtest.Repo{rb, rt} {
		for _, f := range r.Files() {
			inputBytes += f.Size
			// Warm the page cache, so that both runs read from memory.
			if fh, err := os.Open(filepath.Join(map[*hubtest.Repo]string{rb: base, rt: tuned}[r], f.Path)); err == nil {
				io.Copy(io.Discard, fh)
				fh.Close()
			}
		}
	}
	env := []string{"HF_ENDPOINT=" + srv.Endpoint(), "HF_TOKEN=", "HF_TOKEN_PATH=" + filepath.Join(dir, "no-token")}
	out := filepath.Join(scratch, "remote-bench-out")
	defer os.RemoveAll(out)
	var bestLocal, bestRemote, cpuLocal, cpuRemote time.Duration
	var rssLocal, rssRemote int64
	var servedPerInput float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for r := 0; r < rounds; r++ {
			local := func() {
				os.RemoveAll(out)
				d, rss, cpu := runWeft(b, bin, nil, "blend", base, tuned, "--alpha", "0.5", "-o", out, "--quiet", "--force")
				if bestLocal == 0 || d < bestLocal {
					bestLocal, cpuLocal = d, cpu
				}
				rssLocal = max(rssLocal, rss)
			}
			remote := func() {
				os.RemoveAll(out)
				before := srv.Served()
				d, rss, cpu := runWeft(b, bin, env, "blend", "hf://bench/base", "hf://bench/tuned", "--alpha", "0.5", "-o", out, "--quiet", "--force")
				if bestRemote == 0 || d < bestRemote {
					bestRemote, cpuRemote = d, cpu
				}
				rssRemote = max(rssRemote, rss)
				servedPerInput = float64(srv.Served()-before) / float64(inputBytes)
			}
			if r%2 == 0 {
				local()
				remote()
			} else {
				remote()
				local()
			}
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(bestLocal.Milliseconds()), "local-ms")
	b.ReportMetric(float64(bestRemote.Milliseconds()), "remote-ms")
	b.ReportMetric(float64(bestRemote)/float64(bestLocal), "remote/local")
	b.ReportMetric(float64(rssLocal)/(1<<20), "local-peak-RSS-MiB")
	b.ReportMetric(float64(rssRemote)/(1<<20), "remote-peak-RSS-MiB")
	b.ReportMetric(servedPerInput, "served/input-bytes")
	b.Logf("2 x %.0f MB BF16 blend, best of %d: local %v (weft CPU %v), remote over loopback %v (weft CPU %v), %.2fx; peak RSS local %.1f MiB, remote %.1f MiB; server sent %.3f bytes per input byte",
		float64(inputBytes)/2e6, rounds, bestLocal.Round(time.Millisecond), cpuLocal.Round(time.Millisecond), bestRemote.Round(time.Millisecond), cpuRemote.Round(time.Millisecond),
		float64(bestRemote)/float64(bestLocal), float64(rssLocal)/(1<<20), float64(rssRemote)/(1<<20), servedPerInput)
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}
