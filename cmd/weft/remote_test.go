package main

import (
	"bytes"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/weft-ml/weft/internal/hubtest"
	"github.com/weft-ml/weft/internal/testshared"
)

// remoteEnv serves the shared fixtures from a Hub look-alike and points HF_ENDPOINT at it.
// It returns the fixtures' local paths and their hf:// names.
func remoteEnv(t *testing.T) (*hubtest.Server, map[string]string) {
	base := testshared.Path(t, "fixtures/hf/tiny-llama-base")
	tuned := testshared.Path(t, "fixtures/hf/tiny-llama-tuned")
	q8 := testshared.Path(t, "fixtures/gguf/tiny-llama-base-q8_0.gguf")
	q8t := testshared.Path(t, "fixtures/gguf/tiny-llama-tuned-q8_0.gguf")
	srv := hubtest.New(t)
	srv.AddRepo("weft-test/tiny-llama-base").AddDir(t, "", base)
	srv.AddRepo("weft-test/tiny-llama-tuned").AddDir(t, "", tuned)
	g := srv.AddRepo("weft-test/gguf")
	g.AddFile(t, "tiny-llama-base-q8_0.gguf", q8)
	g.AddFile(t, "tiny-llama-tuned-q8_0.gguf", q8t)
	t.Setenv("HF_ENDPOINT", srv.Endpoint())
	t.Setenv("HF_TOKEN", "")
	t.Setenv("HUGGING_FACE_HUB_TOKEN", "")
	t.Setenv("HF_TOKEN_PATH", filepath.Join(t.TempDir(), "no-token"))
	return srv, map[string]string{
		base:  "hf://weft-test/tiny-llama-base",
		tuned: "hf://weft-test/tiny-llama-tuned",
		q8:    "hf://weft-test/gguf/tiny-llama-base-q8_0.gguf",
		q8t:   "hf://weft-test/gguf/tiny-llama-tuned-q8_0.gguf",
	}
}

// TestRemoteInputsEveryCommand runs every command that reads checkpoints twice, on local
// fixtures and on the same fixtures as hf:// names: the outputs are the same (provenance
// aside, which records the remote inputs' url and commit) and so is what the command
// prints, once the names are swapped.
func TestRemoteInputsEveryCommand(t *testing.T) {
	_, names := remoteEnv(t)
	var base, tuned, q8, q8t string
	for l, r := range names {
		switch {
		case strings.HasSuffix(r, "tiny-llama-base"):
			base = l
		case strings.HasSuffix(r, "tiny-llama-tuned"):
			tuned = l
		case strings.HasSuffix(r, "base-q8_0.gguf"):
			q8 = l
		default:
			q8t = l
		}
	}
	// A blend of the local fixtures, for verify.
	made := filepath.Join(t.TempDir(), "made")
	if code, _, errs := runCLI(t, "blend", base, tuned, "--alpha", "0.3", "-o", made, "--quiet"); code != 0 {
		t.Fatal(errs)
	}
	for _, c := range []struct {
		args []string
		out  string // the output the command writes, "" for none
	}{
		{[]string{"inspect", base}, ""},
		{[]string{"inspect", q8, "--json"}, ""},
		{[]string{"convert", base, "-o", "OUT/conv", "--dtype", "f16", "--quiet"}, "conv"},
		{[]string{"convert", q8, "-o", "OUT/conv.gguf", "--dtype", "f16", "--quiet"}, "conv.gguf"},
		{[]string{"blend", base, tuned, "--alpha", "0.3", "-o", "OUT/blend", "--quiet"}, "blend"},
		{[]string{"blend", q8, q8t, "--alpha", "0.7", "-o", "OUT/blend.gguf", "--quiet"}, "blend.gguf"},
		{[]string{"diff", base, tuned}, ""},
		{[]string{"noise", base, "-o", "OUT/noise", "--seed", "3", "--std", "0.01", "--quiet"}, "noise"},
		{[]string{"ablate", base, "-o", "OUT/ablate", "--drop", "1", "--quiet"}, "ablate"},
		{[]string{"ablate", base, "-o", "OUT/replace", "--replace-from", tuned, "--layers", "2", "--quiet"}, "replace"},
		{[]string{"glitch", "add", base, "-o", "OUT/glitch", "--count", "2", "--seed", "1", "--quiet"}, "glitch"},
		{[]string{"glitch", "add", q8, "-o", "OUT/glitch.gguf", "--count", "2", "--seed", "1", "--quiet"}, "glitch.gguf"},
		{[]string{"tokens", "scan", base}, ""},
		{[]string{"soft-token", base, "-o", "OUT/soft.safetensors", "--count", "2", "--seed", "1", "--quiet"}, "soft.safetensors"},
		{[]string{"verify", made, "--inputs", base, "--inputs", tuned}, ""},
		{[]string{"verify", base}, ""},
		{[]string{"verify", q8}, ""},
	} {
		t.Run(strings.Join(c.args[:2], " "), func(t *testing.T) {
			lo, ro := filepath.Join(t.TempDir(), "local"), filepath.Join(t.TempDir(), "remote")
			subst := func(out string, remote bool) []string {
				var a []string
				for _, x := range c.args {
					x = strings.Replace(x, "OUT", out, 1)
					if r, ok := names[x]; ok && remote {
						x = r
					}
					a = append(a, x)
				}
				return a
			}
			lcode, lout, lerr := runCLI(t, subst(lo, false)...)
			rcode, rout, rerr := runCLI(t, subst(ro, true)...)
			if lcode != 0 || rcode != 0 {
				t.Fatalf("exit %d / %d:\n%s\n%s", lcode, rcode, lerr, rerr)
			}
			// The local run's text, with local names swapped for the remote ones.
			keys := make([]string, 0, len(names))
			for l := range names {
				keys = append(keys, l)
			}
			sort.Slice(keys, func(i, j int) bool { return len(keys[i]) > len(keys[j]) })
			swapped := lout
			for _, l := range keys {
				swapped = strings.ReplaceAll(swapped, l, names[l])
			}
			swapped = strings.ReplaceAll(swapped, lo, ro)
			// inspect names the commit of a Hub input; local files have none.
			if c.args[0] == "inspect" {
				var kept []string
				commit := false
				for _, l := range strings.SplitAfter(rout, "\n") {
					if strings.HasPrefix(l, "commit:  ") || strings.HasPrefix(strings.TrimSpace(l), `"commit": "`) {
						commit = true
						continue
					}
					kept = append(kept, l)
				}
				if !commit {
					t.Errorf("inspect of a Hub input does not show its commit:\n%s", rout)
				}
				rout = strings.Join(kept, "")
			}
			if swapped != rout {
				t.Errorf("output differs:\n--- local (names swapped)\n%s\n--- remote\n%s", swapped, rout)
			}
			if c.out != "" {
				hubtest.SameOutput(t, filepath.Join(lo, c.out), filepath.Join(ro, c.out))
			}
		})
	}
}

// TestRemoteTokenFlag checks --token (and --hf-token where --token means a vocabulary
// token): a gated repository refuses without it with a message that says what to do, opens
// with it, and the token shows nowhere.
func TestRemoteTokenFlag(t *testing.T) {
	srv, names := remoteEnv(t)
	srv.Token = "hf_cli_secret"
	gated := srv.AddRepo("weft-test/gated")
	var base string
	for l, r := range names {
		if strings.HasSuffix(r, "tiny-llama-base") {
			base = l
		}
	}
	gated.AddDir(t, "", base)
	gated.Gated = true

	code, _, errs := runCLI(t, "inspect", "hf://weft-test/gated")
	if code != 1 || !strings.Contains(errs, "gated or private") || !strings.Contains(errs, "HF_TOKEN") || !strings.Contains(errs, "--token") {
		t.Fatalf("without a token: exit %d: %s", code, errs)
	}
	code, out, errs := runCLI(t, "inspect", "hf://weft-test/gated", "--token", srv.Token)
	if code != 0 || !strings.Contains(out, "path:    hf://weft-test/gated") {
		t.Fatalf("with --token: exit %d: %s", code, errs)
	}
	if strings.Contains(out+errs, srv.Token) {
		t.Fatal("the token is printed")
	}
	dir := t.TempDir()
	code, _, errs = runCLI(t, "glitch", "add", "hf://weft-test/gated", "-o", filepath.Join(dir, "g"), "--count", "1", "--seed", "1", "--quiet")
	if code != 1 || !strings.Contains(errs, "--hf-token") {
		t.Fatalf("glitch without a token: exit %d: %s", code, errs)
	}
	code, _, errs = runCLI(t, "glitch", "add", "hf://weft-test/gated", "-o", filepath.Join(dir, "g"), "--token", "<|x|>", "--hf-token", srv.Token, "--seed", "1", "--quiet")
	if code != 0 {
		t.Fatalf("glitch with --hf-token: exit %d: %s", code, errs)
	}
	t.Setenv("HF_TOKEN", srv.Token)
	code, _, errs = runCLI(t, "blend", "hf://weft-test/gated", names[strings.Replace(base, "base", "tuned", 1)], "--alpha", "0.5", "-o", filepath.Join(dir, "b"), "--quiet")
	if code != 0 {
		t.Fatalf("blend with HF_TOKEN: exit %d: %s", code, errs)
	}
	if n := srv.AuthOnCDN.Load(); n != 0 {
		t.Fatalf("%d requests to the CDN carried the token", n)
	}
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			if b, _ := os.ReadFile(p); bytes.Contains(b, []byte(srv.Token)) {
				t.Errorf("%s holds the token", p)
			}
		}
		return nil
	})
}
