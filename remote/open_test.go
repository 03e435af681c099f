package remote_test

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/ckpt"
	"github.com/weft-ml/weft/internal/hubtest"
	"github.com/weft-ml/weft/internal/testshared"
	"github.com/weft-ml/weft/ops"
	"github.com/weft-ml/weft/ops/convert"
	"github.com/weft-ml/weft/ops/verify"
	"github.com/weft-ml/weft/remote"
)

// TestAccessErrors checks the messages of refused and missing repositories, revisions and
// files: each names what is wrong and what to do, and never shows the token.
func TestAccessErrors(t *testing.T) {
	srv := hubtest.New(t)
	srv.Token = "hf_right_token"
	gated := srv.AddRepo("weft-test/gated")
	gated.AddDir(t, "", testshared.Path(t, "fixtures/hf/tiny-llama-base"))
	gated.Gated = true
	srv.AddRepo("weft-test/open").AddDir(t, "", testshared.Path(t, "fixtures/hf/tiny-llama-base"))

	withToken := func(tok string) func(*remote.Options) { return func(o *remote.Options) { o.Token = tok } }
	for _, c := range []struct {
		name, token string
		is          error
		says        []string
	}{
		{"hf://weft-test/gated", "", remote.ErrAuth, []string{"HTTP 401", "repository weft-test/gated is gated or private", "accept its terms at " + srv.Endpoint() + "/weft-test/gated", "HF_TOKEN", "hf auth login"}},
		{"hf://weft-test/gated", "hf_wrong_token", remote.ErrAuth, []string{"HTTP 403", "the token given has no access to repository weft-test/gated", "accept its terms", "not in the authorized list"}},
		{"hf://weft-test/missing", "hf_right_token", remote.ErrNotFound, []string{"repository weft-test/missing not found at " + srv.Endpoint()}},
		{"hf://weft-test/missing", "", remote.ErrAuth, []string{"HTTP 401", "(or does not exist)"}},
		{"hf://weft-test/gated@v9", "hf_right_token", remote.ErrNotFound, []string{`revision "v9" not found in repository weft-test/gated`}},
		{"hf://weft-test/gated/nope.safetensors", "hf_right_token", remote.ErrNotFound, []string{`no file or folder "nope.safetensors" in repository weft-test/gated at revision main`}},
		{"hf://weft-test/open/sub", "", remote.ErrNotFound, []string{`no file or folder "sub"`}},
	} {
		t.Run(c.name+" "+c.token, func(t *testing.T) {
			_, err := ckpt.OpenWith(c.name, testClient(srv, withToken(c.token)))
			if err == nil {
				t.Fatal("opened")
			}
			if !errors.Is(err, c.is) {
				t.Errorf("error is not %v: %v", c.is, err)
			}
			if c.is == remote.ErrNotFound && !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("not-found error does not match fs.ErrNotExist: %v", err)
			}
			for _, s := range c.says {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error does not say %q: %v", s, err)
				}
			}
			if c.token != "" && strings.Contains(err.Error(), c.token) {
				t.Errorf("error shows the token: %v", err)
			}
		})
	}
	t.Run("right token", func(t *testing.T) {
		c := open(t, "hf://weft-test/gated", testClient(srv, withToken(srv.Token)))
		if len(c.Tensors) == 0 {
			t.Fatal("no tensors")
		}
	})
	t.Run("file missing on the server", func(t *testing.T) {
		// The listing names a file the server then does not have.
		srv.Fault = func(fr *hubtest.FaultRequest) bool {
			if strings.HasSuffix(fr.F.Path, "-00002-of-00002.safetensors") {
				fr.W.Header().Set("X-Error-Code", "EntryNotFound")
				fr.Status(404, "")
				return true
			}
			return false
		}
		defer func() { srv.Fault = nil }()
		_, err := ckpt.OpenWith("hf://weft-test/open", testClient(srv))
		if !errors.Is(err, remote.ErrNotFound) || !strings.Contains(err.Error(), `file "model-00002-of-00002.safetensors" not found in repository weft-test/open at revision main`) {
			t.Fatalf("error %v", err)
		}
	})
}

// TestGGUFRepositories opens split and several GGUFs from repositories: a split model from
// its first part (and from the repository when it is the only model), one model of several
// by its path, and an error listing the models otherwise.
func TestGGUFRepositories(t *testing.T) {
	f16 := testshared.Path(t, "fixtures/gguf/tiny-llama-base-f16.gguf")
	q8 := testshared.Path(t, "fixtures/gguf/tiny-llama-base-q8_0.gguf")
	dir := t.TempDir()
	in := open(t, q8, nil)
	if err := ckpt.Write(context.Background(), in, filepath.Join(dir, "q8", "tiny-q8.gguf"), ckpt.WriteOptions{SplitMaxSize: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	parts, _ := filepath.Glob(filepath.Join(dir, "q8", "tiny-q8-*.gguf"))
	if len(parts) < 3 {
		t.Fatalf("split in %d parts", len(parts))
	}
	first := filepath.Base(parts[0])
	local := open(t, parts[0], nil)

	srv := hubtest.New(t)
	srv.AddRepo("weft-test/split").AddDir(t, "q8", filepath.Join(dir, "q8"))
	multi := srv.AddRepo("weft-test/multi")
	multi.AddFile(t, "tiny-llama-base-f16.gguf", f16)
	multi.AddFile(t, "tiny-llama-base-q8_0.gguf", q8)
	multi.AddDir(t, "q8", filepath.Join(dir, "q8"))
	rc := testClient(srv)

	for _, name := range []string{"hf://weft-test/split", "hf://weft-test/split/q8", "hf://weft-test/split/q8/" + first, "hf://weft-test/multi/q8/" + first} {
		c := open(t, name, rc)
		sameCheckpoint(t, local, c)
		if len(c.Files) != len(parts) || !strings.HasSuffix(c.Files[1], "/q8/"+filepath.Base(parts[1])) {
			t.Errorf("%s: files %v", name, c.Files)
		}
	}
	_, err := ckpt.OpenWith("hf://weft-test/split/q8/"+filepath.Base(parts[1]), rc)
	if err == nil || !strings.Contains(err.Error(), "open the first part, "+first) {
		t.Errorf("opening part 2: %v", err)
	}
	_, err = ckpt.OpenWith("hf://weft-test/multi", rc)
	if err == nil {
		t.Fatal("a repository of three GGUF models opened")
	}
	for _, s := range []string{"holds 3 GGUF models; name one", "hf://weft-test/multi/tiny-llama-base-f16.gguf", "hf://weft-test/multi/tiny-llama-base-q8_0.gguf", "hf://weft-test/multi/q8/" + first} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error does not say %q: %v", s, err)
		}
	}
	if strings.Contains(err.Error(), filepath.Base(parts[1])) {
		t.Errorf("error lists a later part: %v", err)
	}
	c := open(t, "hf://weft-test/multi/tiny-llama-base-f16.gguf", rc)
	sameCheckpoint(t, open(t, f16, nil), c)

	// Converting the remote split model gives what converting the local one gives.
	conv := func(c *weft.Checkpoint, out string) {
		t.Helper()
		res, err := convertTo(c, weft.F16, ckpt.KindGGUF)
		if err != nil {
			t.Fatal(err)
		}
		if err := ckpt.Write(context.Background(), res.Out, out, ckpt.WriteOptions{Inputs: []*weft.Checkpoint{c}}); err != nil {
			t.Fatal(err)
		}
	}
	want := filepath.Join(t.TempDir(), "local.gguf")
	conv(local, want)
	got := filepath.Join(t.TempDir(), "remote.gguf")
	conv(open(t, "hf://weft-test/split", rc), got)
	hubtest.SameOutput(t, want, got)
}

// fileServer serves files of a directory with Range support over TLS, counting requests
// that carried an Authorization header.
func fileServer(t *testing.T, dir string, ranges bool, auth *atomic.Int64) *httptest.Server {
	ts := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" {
			auth.Add(1)
		}
		p := filepath.Join(dir, filepath.Base(r.URL.Path))
		f, err := os.Open(p)
		if err != nil {
			http.NotFound(w, r)
			return
		}
		defer f.Close()
		st, _ := f.Stat()
		if !ranges {
			w.Header().Set("Content-Length", strconv.FormatInt(st.Size(), 10))
			io.Copy(w, f)
			return
		}
		w.Header().Set("ETag", `"v1-`+filepath.Base(p)+`"`)
		w.Header().Set("Content-Type", "application/octet-stream")
		http.ServeContent(w, r, "", st.ModTime(), f)
	}))
	t.Cleanup(ts.Close)
	return ts
}

// TestHTTPSFiles reads single files from an https:// server: a GGUF and a PyTorch zip,
// converted as their local copies are; a server without ranges is refused; the token is
// never sent to a host other than the Hub's.
func TestHTTPSFiles(t *testing.T) {
	gdir := filepath.Dir(testshared.Path(t, "fixtures/gguf/tiny-llama-base-q8_0.gguf"))
	tdir := filepath.Dir(testshared.Path(t, "fixtures/torch/gpt2-tiny-f32.bin"))
	var auth atomic.Int64
	gs := fileServer(t, gdir, true, &auth)
	tsrv := fileServer(t, tdir, true, &auth)
	rc := remote.NewClient(remote.Options{Endpoint: "https://hub.invalid", Token: "hf_must_not_leave", Transport: gs.Client().Transport, BackoffBase: time.Millisecond, BackoffMax: time.Millisecond})

	for _, c := range []struct {
		url, local string
		kind       ckpt.Kind
		out        string
	}{
		{gs.URL + "/files/tiny-llama-base-q8_0.gguf", filepath.Join(gdir, "tiny-llama-base-q8_0.gguf"), ckpt.KindGGUF, "out.gguf"},
		{tsrv.URL + "/files/gpt2-tiny-f32.bin", filepath.Join(tdir, "gpt2-tiny-f32.bin"), ckpt.KindSafetensorsFile, "out.safetensors"},
		{tsrv.URL + "/files/gpt2-tiny-legacy.bin?sig=abc", filepath.Join(tdir, "gpt2-tiny-legacy.bin"), ckpt.KindSafetensorsFile, "out.safetensors"},
	} {
		t.Run(filepath.Base(c.local), func(t *testing.T) {
			local := open(t, c.local, nil)
			rem := open(t, c.url, rc)
			sameCheckpoint(t, local, rem)
			if strings.Contains(rem.URL, "sig=") || rem.Commit != "" || !strings.HasPrefix(rem.URL, "https://127.0.0.1:") {
				t.Errorf("URL %q commit %q", rem.URL, rem.Commit)
			}
			conv := func(in *weft.Checkpoint, out string) {
				res, err := convertTo(in, weft.F16, c.kind)
				if err != nil {
					t.Fatal(err)
				}
				if err := ckpt.Write(context.Background(), res.Out, out, ckpt.WriteOptions{Inputs: []*weft.Checkpoint{in}}); err != nil {
					t.Fatal(err)
				}
			}
			want, got := filepath.Join(t.TempDir(), c.out), filepath.Join(t.TempDir(), c.out)
			conv(local, want)
			conv(rem, got)
			hubtest.SameOutput(t, want, got)
		})
	}
	if n := auth.Load(); n != 0 {
		t.Errorf("%d requests to a host other than the Hub carried the token", n)
	}
	_, err := ckpt.OpenWith(gs.URL+"/files/absent.gguf", rc)
	if !errors.Is(err, remote.ErrNotFound) || !strings.Contains(err.Error(), "/files/absent.gguf: not found (HTTP 404)") {
		t.Errorf("absent file: %v", err)
	}
	noRange := fileServer(t, gdir, false, &auth)
	_, err = ckpt.OpenWith(noRange.URL+"/files/tiny-llama-base-q8_0.gguf", remote.NewClient(remote.Options{Transport: noRange.Client().Transport}))
	if !errors.Is(err, remote.ErrProtocol) || !strings.Contains(err.Error(), "does not serve byte ranges") {
		t.Errorf("server without ranges: %v", err)
	}
}

// TestVerifyRemoteInputs verifies a blend made from local files against its inputs given
// as hf:// names: recorded header hashes and fingerprints match, samples are recomputed
// from remote data.
func TestVerifyRemoteInputs(t *testing.T) {
	srv := hubtest.New(t)
	localBase, localTuned, _, _ := fixturePair(t, srv)
	out := localBlend(t, localBase, localTuned)
	rc := testClient(srv)
	rep, err := verify.Verify(context.Background(), out, verify.Options{
		Inputs: []string{"hf://weft-test/tiny-llama-base", "hf://weft-test/tiny-llama-tuned"},
		Open:   func(p string) (*weft.Checkpoint, error) { return ckpt.OpenWith(p, rc) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK || rep.Provenance == nil || !rep.Provenance.Verified {
		t.Fatalf("report: ok %v, problems %v, provenance %+v", rep.OK, rep.Problems, rep.Provenance)
	}
	for _, in := range rep.Provenance.Inputs {
		if in.Status != "matched" || !strings.HasPrefix(in.Path, "hf://weft-test/") {
			t.Errorf("input %+v", in)
		}
	}
	// The tuned model given as the base is told apart by its data fingerprint.
	rep, err = verify.Verify(context.Background(), out, verify.Options{
		Inputs: []string{"hf://weft-test/tiny-llama-tuned", "hf://weft-test/tiny-llama-tuned"},
		Open:   func(p string) (*weft.Checkpoint, error) { return ckpt.OpenWith(p, rc) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK {
		t.Fatal("verified with the wrong base")
	}
}

// TestLargeRemoteSideFile checks that a side file too large to hold in memory is refused
// when it would be read (here, copied to the output), naming it, and that nothing is
// written; opening and inspecting the repository are not affected.
func TestLargeRemoteSideFile(t *testing.T) {
	srv := hubtest.New(t)
	r := srv.AddRepo("weft-test/big-side")
	r.AddDir(t, "", testshared.Path(t, "fixtures/hf/tiny-llama-base"))
	r.AddZeros("big.dat", weft.MaxSourceSideFile+1)
	rc := testClient(srv)
	c := open(t, "hf://weft-test/big-side", rc)
	if c.SideFile("big.dat") == nil {
		t.Fatal("big.dat is not a side file")
	}
	parent := t.TempDir()
	err := ckpt.Write(context.Background(), c, filepath.Join(parent, "out"), ckpt.WriteOptions{Inputs: []*weft.Checkpoint{c}})
	if err == nil || !strings.Contains(err.Error(), "hf://weft-test/big-side/big.dat: a side file of 536870913 bytes") {
		t.Fatalf("error %v", err)
	}
	if ents, _ := os.ReadDir(parent); len(ents) != 0 {
		t.Fatalf("output left behind: %s", ents[0].Name())
	}
	if n := r.File("big.dat").Served.Load(); n != 0 {
		t.Fatalf("%d bytes of big.dat served", n)
	}
}

// TestTorchDirectory opens a Hugging Face directory of PyTorch weights from the Hub.
func TestTorchDirectory(t *testing.T) {
	bin := testshared.Path(t, "fixtures/torch/gpt2-tiny-f32.bin")
	dir := filepath.Join(t.TempDir(), "torch") // named as the repository, which provenance records
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"pytorch_model.bin": data, "config.json": []byte(`{"model_type": "gpt2"}` + "\n")} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	srv := hubtest.New(t)
	srv.AddRepo("weft-test/torch").AddDir(t, "", dir)
	rc := testClient(srv)
	local := open(t, dir, nil)
	rem := open(t, "hf://weft-test/torch", rc)
	sameCheckpoint(t, local, rem)
	want, got := filepath.Join(t.TempDir(), "out"), filepath.Join(t.TempDir(), "out")
	for _, c := range []struct {
		in  *weft.Checkpoint
		out string
	}{{local, want}, {rem, got}} {
		res, err := convertTo(c.in, weft.Invalid, ckpt.KindHFDir)
		if err != nil {
			t.Fatal(err)
		}
		if err := ckpt.Write(context.Background(), res.Out, c.out, ckpt.WriteOptions{Inputs: []*weft.Checkpoint{c.in}}); err != nil {
			t.Fatal(err)
		}
	}
	hubtest.SameOutput(t, want, got)
}

// convertTo runs convert on in (casting floating-point tensors to dt unless it is
// weft.Invalid) for an output of the given kind, as the command does.
func convertTo(in *weft.Checkpoint, dt weft.DType, kind ckpt.Kind) (*ops.Result, error) {
	target := weft.Safetensors
	if kind == ckpt.KindGGUF {
		target = weft.GGUF
	}
	return ops.Run(&convert.Options{Types: ops.Types{DType: dt}}, ops.Inputs{Checkpoints: []*weft.Checkpoint{in}}, target)
}
