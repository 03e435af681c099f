package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// moduleRoot returns the directory holding go.mod, walking up from the test's directory.
func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test directory")
		}
		dir = parent
	}
}

// buildWeft builds the real binary into a temporary directory.
func buildWeft(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "weft")
	gocmd, err := exec.LookPath("go")
	if err != nil {
		gocmd = filepath.Join(runtime.GOROOT(), "bin", "go") // the toolchain that built this test
	}
	cmd := exec.Command(gocmd, "build", "-o", bin, "./cmd/weft")
	cmd.Dir = moduleRoot(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// sparseSafetensors writes a safetensors file of n F32 tensors of rows x cols zeros, as a
// sparse file: large, yet instant to make and to read.
func sparseSafetensors(t *testing.T, path string, n int, rows, cols int64) {
	t.Helper()
	var ents []string
	size := rows * cols * 4
	for i := 0; i < n; i++ {
		ents = append(ents, fmt.Sprintf(`"model.layers.%d.mlp.up_proj.weight":{"dtype":"F32","shape":[%d,%d],"data_offsets":[%d,%d]}`, i, rows, cols, int64(i)*size, int64(i+1)*size))
	}
	hdr := "{" + strings.Join(ents, ",") + "}"
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(append(le64(uint64(len(hdr))), hdr...)); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(int64(8+len(hdr)) + int64(n)*size); err != nil {
		t.Fatal(err)
	}
}

// entries lists a directory's names.
func entries(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// startAndWaitForTemp starts cmd and waits until a temporary output (".NAME.weft-tmp-...")
// appears in dir: the write is then under way.
func startAndWaitForTemp(t *testing.T, cmd *exec.Cmd, dir string) {
	t.Helper()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		for _, n := range entries(t, dir) {
			if strings.Contains(n, ".weft-tmp-") {
				return
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	cmd.Process.Kill()
	cmd.Wait()
	t.Fatalf("no temporary file appeared in %s within 30 s", dir)
}

// waitExit waits for cmd and returns its exit status (or -signal when a signal killed it).
func waitExit(t *testing.T, cmd *exec.Cmd, within time.Duration) int {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				return -int(ws.Signal())
			}
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	case <-time.After(within):
		cmd.Process.Kill()
		<-done
		t.Fatalf("still running %v after the signal", within)
		return 0
	}
}

// TestFaults runs the real binary and interrupts, kills and starves its writes: an
// interrupted write (SIGINT, SIGTERM) exits 130 and leaves nothing, neither the output nor a
// temporary file; a killed one (SIGKILL) leaves nothing at the target path; a write that
// runs out of space fails with a clear error and leaves nothing.
func TestFaults(t *testing.T) {
	bin := buildWeft(t)
	big := filepath.Join(t.TempDir(), "big.safetensors")
	sparseSafetensors(t, big, 4, 65536, 1024) // 1 GiB of zeros, sparse

	type run struct {
		name string
		args func(out string) []string
		out  string
		sig  syscall.Signal
	}
	runs := []run{
		{"synth-SIGINT", func(o string) []string { return []string{"synth", "--size", "300MB", "-o", o} }, "m.safetensors", syscall.SIGINT},
		{"synth-SIGTERM-hfdir", func(o string) []string { return []string{"synth", "--size", "300MB", "-o", o} }, "model", syscall.SIGTERM},
		{"convert-SIGINT", func(o string) []string { return []string{"convert", big, "-o", o, "--dtype", "f16", "--threads", "2"} }, "c.safetensors", syscall.SIGINT},
		{"convert-SIGTERM-hfdir", func(o string) []string { return []string{"convert", big, "-o", o, "--threads", "1"} }, "cdir", syscall.SIGTERM},
	}
	for _, r := range runs {
		t.Run(r.name, func(t *testing.T) {
			dir := t.TempDir()
			out := filepath.Join(dir, r.out)
			cmd := exec.Command(bin, r.args(out)...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			startAndWaitForTemp(t, cmd, dir)
			if err := cmd.Process.Signal(r.sig); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			if code := waitExit(t, cmd, 10*time.Second); code != 130 {
				t.Fatalf("exit %d after %v, want 130; stderr %q", code, r.sig, stderr.String())
			}
			if !strings.Contains(stderr.String(), "interrupted; nothing was written") {
				t.Errorf("stderr %q", stderr.String())
			}
			if left := entries(t, dir); len(left) != 0 {
				t.Errorf("left behind after %v: %v", r.sig, left)
			}
			t.Logf("%v: exited 130 in %v", r.sig, time.Since(start).Round(time.Millisecond))
		})
	}

	t.Run("SIGKILL", func(t *testing.T) {
		dir := t.TempDir()
		out := filepath.Join(dir, "m.safetensors")
		cmd := exec.Command(bin, "synth", "--size", "300MB", "-o", out)
		startAndWaitForTemp(t, cmd, dir)
		if err := cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		if code := waitExit(t, cmd, 10*time.Second); code != -int(syscall.SIGKILL) {
			t.Fatalf("exit %d, want death by SIGKILL", code)
		}
		if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("a killed write left something at the target path: %v", err)
		}
		// A killed process cannot clean up: its temporary file stays, under a name no
		// reader takes for a checkpoint, recording its owner.
		left := entries(t, dir)
		for _, n := range left {
			if !strings.HasPrefix(n, fmt.Sprintf(".m.safetensors.weft-tmp-%d-", cmd.Process.Pid)) {
				t.Errorf("unexpected entry %s", n)
			}
		}
		// The next run on the same target removes it, and says so.
		next := exec.Command(bin, "synth", "--tiny", "-o", out)
		var stderr bytes.Buffer
		next.Stderr = &stderr
		if err := next.Run(); err != nil {
			t.Fatalf("%v: %s", err, stderr.String())
		}
		if got := entries(t, dir); len(got) != 1 || got[0] != "m.safetensors" {
			t.Errorf("after the next run: %v", got)
		}
		for _, n := range left {
			if !strings.Contains(stderr.String(), "removed "+filepath.Join(dir, n)+", left by weft process "+fmt.Sprint(cmd.Process.Pid)+" which is no longer running") {
				t.Errorf("removal of %s not reported: %q", n, stderr.String())
			}
		}
	})

	small := filepath.Join(t.TempDir(), "small.safetensors")
	sparseSafetensors(t, small, 2, 1024, 1024) // 8 MiB

	// outOfSpace runs convert into dir, which cannot hold the output, and checks the error
	// and that nothing is left.
	outOfSpace := func(t *testing.T, dir, want string, wrap func(args []string) *exec.Cmd) {
		for _, out := range []string{filepath.Join(dir, "o.safetensors"), filepath.Join(dir, "hf")} {
			cmd := wrap([]string{bin, "convert", small, "-o", out, "--quiet"})
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			if code := waitExit(t, cmd, 30*time.Second); code != 1 {
				t.Fatalf("%s: exit %d, want 1; stderr %q", out, code, stderr.String())
			}
			msg := stderr.String()
			if !strings.HasPrefix(msg, "weft convert: ") || !strings.Contains(msg, want) || strings.Count(msg, "\n") != 1 {
				t.Errorf("%s: want one line naming %q, got %q", out, want, msg)
			}
			if left := entries(t, dir); len(left) != 0 {
				t.Errorf("%s: left behind: %v", out, left)
			}
		}
	}

	t.Run("out-of-disk-tmpfs", func(t *testing.T) {
		dir := t.TempDir()
		if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", dir).CombinedOutput(); err != nil {
			t.Skipf("cannot mount a 2 MiB tmpfs (needs root and mount permission: %v: %s); the file-size limit test below covers the same error path", err, bytes.TrimSpace(out))
		}
		t.Cleanup(func() {
			if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
				t.Errorf("umount %s: %v: %s", dir, err, out)
			}
		})
		outOfSpace(t, dir, "no space left on device", func(args []string) *exec.Cmd { return exec.Command(args[0], args[1:]...) })
	})

	t.Run("file-size-limit", func(t *testing.T) {
		// RLIMIT_FSIZE of 1 MiB: writes past it fail with EFBIG, as a full disk fails with
		// ENOSPC (Go ignores the SIGXFSZ that comes with it).
		dir := t.TempDir()
		outOfSpace(t, dir, "file too large", func(args []string) *exec.Cmd {
			return exec.Command("/bin/sh", append([]string{"-c", `ulimit -f 2048 && exec "$@"`, "sh"}, args...)...)
		})
	})
}

// TestInputsNeverWritten: no output path reaches an input, whether it is the input itself,
// a hard link or a symbolic link to it, the input's directory or a directory holding it,
// with or without --force; the inputs stay byte for byte the same.
func TestInputsNeverWritten(t *testing.T) {
	dir := t.TempDir()
	hf := filepath.Join(dir, "hf")
	if code, _, errs := runCLI(t, "synth", "--tiny", "-o", hf); code != 0 {
		t.Fatal(errs)
	}
	st := filepath.Join(dir, "m.safetensors")
	if code, _, errs := runCLI(t, "synth", "--tiny", "-o", st); code != 0 {
		t.Fatal(errs)
	}
	gg := filepath.Join(dir, "m.gguf")
	if code, _, errs := runCLI(t, "synth", "--tiny", "-o", gg); code != 0 {
		t.Fatal(errs)
	}
	hard := filepath.Join(dir, "hard.safetensors")
	soft := filepath.Join(dir, "soft.gguf")
	softDir := filepath.Join(dir, "softdir")
	if err := os.Link(st, hard); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(gg, soft); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(hf, softDir); err != nil {
		t.Fatal(err)
	}
	before := treeHash(t, dir)
	for _, args := range [][]string{
		{"convert", st, "-o", st, "--dtype", "f32"},
		{"convert", st, "-o", hard, "--dtype", "f32"},
		{"convert", hard, "-o", st, "--dtype", "f32"},
		{"convert", gg, "-o", gg, "--dtype", "q8_0"},
		{"convert", gg, "-o", soft, "--dtype", "q8_0"},
		{"convert", soft, "-o", gg},
		{"convert", hf, "-o", hf, "--dtype", "f32"},
		{"convert", hf, "-o", softDir},
		{"convert", softDir, "-o", hf},
		{"convert", st, "-o", dir, "--dtype", "f32"},
		{"convert", filepath.Join(hf, "model.safetensors"), "-o", hf},
	} {
		for _, force := range []bool{false, true} {
			a := append([]string(nil), args...)
			if force {
				a = append(a, "--force")
			}
			code, _, errs := runCLI(t, a...)
			if code != 1 {
				t.Errorf("%v: exit %d, want 1 (%s)", a, code, errs)
			}
			if force && !strings.Contains(errs, "output would overwrite an input") {
				t.Errorf("%v: %s", a, errs)
			}
		}
	}
	if treeHash(t, dir) != before {
		t.Fatal("an input changed")
	}
	for _, n := range entries(t, dir) {
		if strings.Contains(n, ".weft-tmp-") {
			t.Errorf("temporary file left: %s", n)
		}
	}
}
