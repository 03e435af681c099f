package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/weft-ml/weft/internal/testshared"
)

// TestPartsAsSeparateProcesses: n runs of the weft binary with --part i/n, side by side, write
// the same files, byte for byte, as one run: sharded safetensors directories (part 0 writing
// the index and side files), a split GGUF, with and without recorded provenance (whose data
// fingerprints each part computes).
func TestPartsAsSeparateProcesses(t *testing.T) {
	bin := buildWeft(t)
	hf := testshared.Path(t, "fixtures/hf/tiny-llama-base")
	hft := testshared.Path(t, "fixtures/hf/tiny-llama-tuned")
	gg := testshared.Path(t, "fixtures/gguf/tiny-llama-base-f32.gguf")
	cases := []struct {
		name  string
		parts int
		out   string
		args  []string
	}{
		{"reshard", 3, "out", []string{"convert", hf, "--max-shard-size", "20KB"}},
		{"cast", 4, "out", []string{"convert", hf, "--dtype", "f32", "--max-shard-size", "30KB"}},
		{"blend", 2, "out", []string{"blend", hf, hft, "--alpha", "0.3", "--max-shard-size", "25KB"}},
		{"split gguf", 3, "out.gguf", []string{"noise", gg, "--seed", "1", "--std", "0.01", "--split-max-size", "3MB"}},
		{"more parts than files", 5, "out.safetensors", []string{"convert", hf, "--max-shard-size", "40KB"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			one := filepath.Join(dir, "one", c.out)
			run := func(args ...string) error {
				cmd := exec.Command(bin, append(append(append([]string(nil), c.args...), args...), "--quiet")...)
				out, err := cmd.CombinedOutput()
				if err != nil {
					return fmt.Errorf("%v: %v\n%s", cmd.Args, err, out)
				}
				return nil
			}
			if err := run("-o", one); err != nil {
				t.Fatal(err)
			}
			split := filepath.Join(dir, "parts", c.out)
			var wg sync.WaitGroup
			errs := make([]error, c.parts)
			for i := 0; i < c.parts; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					errs[i] = run("-o", split, "--part", fmt.Sprintf("%d/%d", i, c.parts))
				}()
			}
			wg.Wait()
			for _, err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			a, b := tree(t, filepath.Dir(one)), tree(t, filepath.Dir(split))
			if len(a) < 3 {
				t.Fatalf("one run wrote %d files: the case splits nothing", len(a))
			}
			if strings.Join(keys(a), " ") != strings.Join(keys(b), " ") {
				t.Fatalf("one run wrote %v, the parts %v", keys(a), keys(b))
			}
			for n := range a {
				if !bytes.Equal(a[n], b[n]) {
					t.Errorf("%s differs", n)
				}
			}
		})
	}
}

// TestPartFlag: --part is checked, and a dry run says what the part writes.
func TestPartFlag(t *testing.T) {
	hf := testshared.Path(t, "fixtures/hf/tiny-llama-base")
	out := filepath.Join(t.TempDir(), "out")
	for _, bad := range []string{"3/3", "-1/2", "1", "a/b", "0/0"} {
		if code, _, errs := runCLI(t, "convert", hf, "-o", out, "--part", bad); code != 2 || !strings.Contains(errs, "--part") {
			t.Errorf("--part %s: exit %d, %s", bad, code, errs)
		}
	}
	code, stdout, errs := runCLI(t, "convert", hf, "-o", out, "--max-shard-size", "20KB", "--part", "1/2", "--dry-run")
	if code != 0 || !strings.Contains(stdout, "part 1 of 2 writes: model-0000") || strings.Contains(stdout, "part 1 of 2 writes: model.safetensors.index.json") {
		t.Fatalf("exit %d: %s%s", code, stdout, errs)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Fatal("a dry run wrote something")
	}
}

// tree returns every file under dir (hidden ones too) with its contents, by relative path.
func tree(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	m := map[string][]byte{}
	err := filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		m[rel] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func keys(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
