package remote_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/ckpt"
	"github.com/weft-ml/weft/internal/hubtest"
	"github.com/weft-ml/weft/internal/synth"
	"github.com/weft-ml/weft/internal/testshared"
	"github.com/weft-ml/weft/ops"
	"github.com/weft-ml/weft/ops/blend"
	"github.com/weft-ml/weft/remote"
)

// testClient returns a client of srv with short waits, so that faults cost milliseconds.
func testClient(srv *hubtest.Server, mod ...func(*remote.Options)) *remote.Client {
	o := remote.Options{
		Endpoint:       srv.Endpoint(),
		BackoffBase:    time.Millisecond,
		BackoffMax:     5 * time.Millisecond,
		HeaderTimeout:  10 * time.Second,
		RequestTimeout: 30 * time.Second,
		StallWindow:    time.Second,
		StallRate:      1,
	}
	for _, m := range mod {
		m(&o)
	}
	return remote.NewClient(o)
}

// small makes requests small, so that the fixtures take many of them.
func small(o *remote.Options) {
	o.RangeSize = 32 << 10
	o.BlockSize = 4 << 10
	o.ReadAhead = 128 << 10
}

// generated holds synthetic sharded checkpoints made once for the package's tests.
var generated struct {
	once             sync.Once
	dir, base, tuned string
	err              error
}

// genPair writes a base and a related tuned model of about 12 MB each in three shards.
func genPair(t testing.TB) (base, tuned string) {
	t.Helper()
	generated.once.Do(func() {
		generated.dir, generated.err = os.MkdirTemp("", "weft-remote-test-")
		if generated.err != nil {
			return
		}
		for i, name := range []string{"gen-base", "gen-tuned"} {
			s := synth.Spec{Layers: 8, Hidden: 256, Intermediate: 512, Vocab: 1000, Heads: 4, DType: weft.BF16, Seed: uint64(i + 1), MaxShardSize: 5 << 20}
			if i == 1 {
				s.Related = 1
			}
			if generated.err = s.Write(context.Background(), filepath.Join(generated.dir, name), false); generated.err != nil {
				return
			}
		}
		generated.base, generated.tuned = filepath.Join(generated.dir, "gen-base"), filepath.Join(generated.dir, "gen-tuned")
	})
	if generated.err != nil {
		t.Fatal(generated.err)
	}
	return generated.base, generated.tuned
}

func TestMain(m *testing.M) {
	code := m.Run()
	if generated.dir != "" {
		os.RemoveAll(generated.dir)
	}
	os.Exit(code)
}

// fixturePair serves the shared HF fixtures as weft-test/tiny-llama-{base,tuned}.
func fixturePair(t *testing.T, srv *hubtest.Server) (localBase, localTuned string, base, tuned *hubtest.Repo) {
	localBase = testshared.Path(t, "fixtures/hf/tiny-llama-base")
	localTuned = testshared.Path(t, "fixtures/hf/tiny-llama-tuned")
	base = srv.AddRepo("weft-test/tiny-llama-base")
	base.AddDir(t, "", localBase)
	tuned = srv.AddRepo("weft-test/tiny-llama-tuned")
	tuned.AddDir(t, "", localTuned)
	return
}

func open(t testing.TB, name string, rc *remote.Client) *weft.Checkpoint {
	t.Helper()
	c, err := ckpt.OpenWith(name, rc)
	if err != nil {
		t.Fatalf("open %s: %v", name, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// sameCheckpoint compares what two opened checkpoints say about themselves.
func sameCheckpoint(t *testing.T, local, rem *weft.Checkpoint) {
	t.Helper()
	if local.Format != rem.Format || local.HeaderHash != rem.HeaderHash || len(local.Files) != len(rem.Files) {
		t.Fatalf("format %s/%s, header hash %s/%s, files %d/%d", local.Format, rem.Format, local.HeaderHash, rem.HeaderHash, len(local.Files), len(rem.Files))
	}
	if len(local.Tensors) != len(rem.Tensors) {
		t.Fatalf("%d tensors, remote %d", len(local.Tensors), len(rem.Tensors))
	}
	for i, a := range local.Tensors {
		b := rem.Tensors[i]
		if a.Name != b.Name || a.DType != b.DType || a.Offset != b.Offset || a.Shard != b.Shard || !equalShape(a.Shape, b.Shape) {
			t.Fatalf("tensor %d: %s %v %v @%d shard %d, remote %s %v %v @%d shard %d", i, a.Name, a.DType, a.Shape, a.Offset, a.Shard, b.Name, b.DType, b.Shape, b.Offset, b.Shard)
		}
	}
	if len(local.SideFiles) != len(rem.SideFiles) {
		t.Fatalf("side files %d, remote %d", len(local.SideFiles), len(rem.SideFiles))
	}
	for i := range local.SideFiles {
		if local.SideFiles[i].Name != rem.SideFiles[i].Name {
			t.Fatalf("side file %q, remote %q", local.SideFiles[i].Name, rem.SideFiles[i].Name)
		}
	}
}

func equalShape(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestInspectReadsHeadersOnly opens a sharded repository the way inspect does and checks
// that it agrees with the local directory while the server served at most 1 MiB of a
// repository of about 12 MB, and no side file.
func TestInspectReadsHeadersOnly(t *testing.T) {
	localBase, _ := genPair(t)
	srv := hubtest.New(t)
	srv.PageSize = 3 // the listing comes in pages
	repo := srv.AddRepo("weft-test/gen-base")
	repo.AddDir(t, "", localBase)
	var total int64
	for _, f := range repo.Files() {
		total += f.Size
	}
	rc := testClient(srv)
	c := open(t, "hf://weft-test/gen-base", rc)
	local := open(t, localBase, nil)
	sameCheckpoint(t, local, c)
	if len(c.Files) < 3 {
		t.Fatalf("want a sharded repository, got %d files", len(c.Files))
	}
	served := srv.Served()
	t.Logf("opened %d shards (%d MB): served %d bytes in %d data requests", len(c.Files), total>>20, served, srv.DataRequests())
	if served > 1<<20 {
		t.Errorf("opening served %d bytes, more than 1 MiB", served)
	}
	if total < 8<<20 {
		t.Fatalf("repository of %d bytes is too small for the check to mean anything", total)
	}
	for _, name := range []string{"config.json", "tokenizer.json"} {
		if n := repo.File(name).Served.Load(); n != 0 {
			t.Errorf("%s: %d bytes served at open; side files are read when used", name, n)
		}
	}
	if want := "hf://weft-test/gen-base"; c.URL != want || c.Path != want || c.Commit != repo.Commit {
		t.Errorf("URL %q Path %q Commit %q, want %q and commit %s", c.URL, c.Path, c.Commit, want, repo.Commit)
	}
	if c.Dir != "" {
		t.Errorf("Dir %q for a remote checkpoint", c.Dir)
	}
	// Side files read through the network agree with the local ones.
	for i, sf := range c.SideFiles {
		r, err := sf.Open()
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(r)
		r.Close()
		if err != nil {
			t.Fatal(err)
		}
		want, err := os.ReadFile(local.SideFiles[i].Path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("side file %s differs", sf.Name)
		}
	}
}

// runBlend blends base and tuned at 0.3 into out (a Hugging Face directory).
func runBlend(base, tuned *weft.Checkpoint, out string) error {
	res, err := ops.Run(&blend.Options{Alpha: 0.3}, ops.Inputs{Checkpoints: []*weft.Checkpoint{base, tuned}}, weft.Safetensors)
	if err != nil {
		return err
	}
	return ckpt.Write(context.Background(), res.Out, out, ckpt.WriteOptions{Threads: 4, Inputs: []*weft.Checkpoint{base, tuned}})
}

// blendRemote opens both repositories with rc and blends them into out.
func blendRemote(rc *remote.Client, base, tuned, out string) error {
	b, err := ckpt.OpenWith(base, rc)
	if err != nil {
		return err
	}
	defer b.Close()
	tu, err := ckpt.OpenWith(tuned, rc)
	if err != nil {
		return err
	}
	defer tu.Close()
	return runBlend(b, tu, out)
}

// localBlend blends two local checkpoints into a new directory and returns it.
func localBlend(t *testing.T, base, tuned string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "local-blend")
	b := open(t, base, nil)
	tu := open(t, tuned, nil)
	if err := runBlend(b, tu, out); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestBlendReadsEachByteOnce blends two sharded repositories from the server and checks
// the output against the same blend of the local directories, and that the server sent no
// byte of any weight file twice, with the default sizes and with small ones (many ranges,
// read-ahead across many requests).
func TestBlendReadsEachByteOnce(t *testing.T) {
	localBase, localTuned := genPair(t)
	want := localBlend(t, localBase, localTuned)
	for _, cfg := range []struct {
		name string
		mod  func(*remote.Options)
	}{
		{"default sizes", func(*remote.Options) {}},
		{"small ranges", func(o *remote.Options) {
			o.RangeSize = 256 << 10
			o.BlockSize = 16 << 10
			o.ReadAhead = 1 << 20
			o.CacheBytes = 24 << 20
		}},
	} {
		t.Run(cfg.name, func(t *testing.T) {
			srv := hubtest.New(t)
			b := srv.AddRepo("weft-test/gen-base")
			b.AddDir(t, "", localBase)
			tu := srv.AddRepo("weft-test/gen-tuned")
			tu.AddDir(t, "", localTuned)
			var weights []*hubtest.File
			for _, r := range []*hubtest.Repo{b, tu} {
				for _, f := range r.Files() {
					if strings.HasSuffix(f.Path, ".safetensors") {
						f.TrackCoverage()
						weights = append(weights, f)
					}
				}
			}
			rc := testClient(srv, cfg.mod)
			out := filepath.Join(t.TempDir(), "remote-blend")
			if err := blendRemote(rc, "hf://weft-test/gen-base", "hf://weft-test/gen-tuned", out); err != nil {
				t.Fatal(err)
			}
			hubtest.SameOutput(t, want, out)
			for _, f := range weights {
				if n, at := f.MaxCoverage(); n > 1 {
					t.Errorf("%s: byte %d served %d times", f.Path, at, n)
				}
				if c := f.Covered(); c != f.Size {
					t.Errorf("%s: %d of %d bytes served", f.Path, c, f.Size)
				}
			}
			st := rc.Stats()
			t.Logf("%d requests on %d connections, %d retries, %d bytes received", st.Requests, srv.Conns.Load(), st.Retries, st.Received)
			if st.Retries != 0 {
				t.Errorf("%d retries without faults", st.Retries)
			}
			// Connections are reused: at most one per request slot and host (Hub, CDN).
			if c := srv.Conns.Load(); c > 2*16+2 || c*4 > st.Requests {
				t.Errorf("%d connections for %d requests", c, st.Requests)
			}
		})
	}
}

// TestBlendInTightMemory blends with a cache far smaller than the engine's reads: read-ahead
// stops at the bound, the output is still right, and the memory held stays within the
// bound plus what the engine's workers wait for.
func TestBlendInTightMemory(t *testing.T) {
	localBase, localTuned := genPair(t)
	want := localBlend(t, localBase, localTuned)
	srv := hubtest.New(t)
	srv.AddRepo("weft-test/gen-base").AddDir(t, "", localBase)
	srv.AddRepo("weft-test/gen-tuned").AddDir(t, "", localTuned)
	const cache = 2 << 20
	rc := testClient(srv, func(o *remote.Options) {
		o.RangeSize = 256 << 10
		o.ReadAhead = 1 << 20
		o.CacheBytes = cache
		o.KeepBytes = 256 << 10
	})
	out := filepath.Join(t.TempDir(), "remote-blend")
	if err := blendRemote(rc, "hf://weft-test/gen-base", "hf://weft-test/gen-tuned", out); err != nil {
		t.Fatal(err)
	}
	hubtest.SameOutput(t, want, out)
	st := rc.Stats()
	// runBlend's 4 workers each wait for at most one 4 MiB chunk of one input (copies) or
	// two inputs' rows (computed tensors); kept pieces are bounded per file.
	bound := int64(cache + 4*4<<20 + 6*256<<10)
	t.Logf("peak held %d bytes (bound %d), received %d for %d served", st.PeakHeld, bound, st.Received, srv.Served())
	if st.PeakHeld > bound {
		t.Errorf("peak held %d bytes, more than %d", st.PeakHeld, bound)
	}
}

// TestGGUFBlendReadsEachByteOnce does for GGUF what TestBlendReadsEachByteOnce does for
// safetensors, on the fixtures and on a generated pair whose header (a 32000-token
// vocabulary) is about 1 MB: the GGUF reader parses the header through a 64 KiB buffer and
// hashes it again afterwards, and neither costs a second fetch; opening reads the header
// and at most one block past it.
func TestGGUFBlendReadsEachByteOnce(t *testing.T) {
	gdir := t.TempDir()
	for i, name := range []string{"big-vocab-base.gguf", "big-vocab-tuned.gguf"} {
		s := synth.Spec{Layers: 2, Hidden: 64, Intermediate: 128, Vocab: 32000, Heads: 4, DType: weft.F16, Seed: uint64(i + 1), GGUF: true}
		if i == 1 {
			s.Related = 1
		}
		if err := s.Write(context.Background(), filepath.Join(gdir, name), false); err != nil {
			t.Fatal(err)
		}
	}
	for _, pair := range [][2]string{
		{testshared.Path(t, "fixtures/gguf/tiny-llama-base-f32.gguf"), testshared.Path(t, "fixtures/gguf/tiny-llama-tuned-f32.gguf")},
		{filepath.Join(gdir, "big-vocab-base.gguf"), filepath.Join(gdir, "big-vocab-tuned.gguf")},
	} {
		lb, lt := pair[0], pair[1]
		t.Run(filepath.Base(lb), func(t *testing.T) {
			want := filepath.Join(t.TempDir(), "local.gguf")
			local := open(t, lb, nil)
			if err := runBlend(local, open(t, lt, nil), want); err != nil {
				t.Fatal(err)
			}
			srv := hubtest.New(t)
			fb := srv.AddRepo("weft-test/gguf-base").AddFile(t, filepath.Base(lb), lb)
			ft := srv.AddRepo("weft-test/gguf-tuned").AddFile(t, filepath.Base(lt), lt)
			fb.TrackCoverage()
			ft.TrackCoverage()
			rc := testClient(srv, func(o *remote.Options) { o.RangeSize = 1 << 20; o.ReadAhead = 4 << 20 })
			b := open(t, "hf://weft-test/gguf-base", rc)
			hdr := fb.Served.Load()
			tu := open(t, "hf://weft-test/gguf-tuned", rc)
			sameCheckpoint(t, local, b)
			dataStart := local.Tensors[0].Offset
			t.Logf("header %d bytes; opening served %d bytes of %d", dataStart, hdr, fb.Size)
			if hdr > dataStart+1<<20 {
				t.Errorf("opening served %d bytes for a %d-byte header", hdr, dataStart)
			}
			got := filepath.Join(t.TempDir(), "remote.gguf")
			if err := runBlend(b, tu, got); err != nil {
				t.Fatal(err)
			}
			hubtest.SameOutput(t, want, got)
			for _, f := range []*hubtest.File{fb, ft} {
				if n, at := f.MaxCoverage(); n > 1 {
					t.Errorf("%s: byte %d served %d times", f.Path, at, n)
				}
			}
		})
	}
}

// TestContextEndsRequests checks that a client's Context ends requests that would
// otherwise wait for a stalled server.
func TestContextEndsRequests(t *testing.T) {
	srv := hubtest.New(t)
	fixturePair(t, srv)
	srv.Fault = func(fr *hubtest.FaultRequest) bool {
		if fr.N > 1 {
			fr.Trickle(time.Second, time.Minute)
			return true
		}
		return false
	}
	ctx, cancel := context.WithCancel(context.Background())
	rc := testClient(srv, func(o *remote.Options) { o.Context = ctx; o.StallWindow = time.Minute })
	time.AfterFunc(200*time.Millisecond, cancel)
	start := time.Now()
	_, err := ckpt.OpenWith("hf://weft-test/tiny-llama-base", rc)
	if err == nil || !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %v to end", d)
	}
}

// TestProvenanceRecordsURLAndCommit checks the output's record of remote inputs: their
// hf:// names and resolved commits, and never the token.
func TestProvenanceRecordsURLAndCommit(t *testing.T) {
	srv := hubtest.New(t)
	srv.Token = "hf_secret_test_token"
	_, _, b, tu := fixturePair(t, srv)
	b.Gated = true
	rc := testClient(srv, func(o *remote.Options) { o.Token = srv.Token })
	out := filepath.Join(t.TempDir(), "out")
	if err := blendRemote(rc, "hf://weft-test/tiny-llama-base@main", "hf://weft-test/tiny-llama-tuned", out); err != nil {
		t.Fatal(err)
	}
	c := open(t, out, nil)
	prov, err := ops.ReadProvenance(c)
	if err != nil || prov == nil || len(prov.Steps) != 1 {
		t.Fatalf("provenance %+v: %v", prov, err)
	}
	recs := prov.Steps[0].Inputs
	if len(recs) != 2 || recs[0].URL != "hf://weft-test/tiny-llama-base@main" || recs[0].Commit != b.Commit ||
		recs[1].URL != "hf://weft-test/tiny-llama-tuned" || recs[1].Commit != tu.Commit || recs[0].Path != "tiny-llama-base" {
		t.Fatalf("recorded inputs %+v", recs)
	}
	walkNoSecret(t, out, srv.Token)
	if srv.AuthOnHub.Load() == 0 {
		t.Fatal("the token never reached the Hub")
	}
	if n := srv.AuthOnCDN.Load(); n != 0 {
		t.Fatalf("%d requests to the CDN carried an Authorization header", n)
	}
}

// walkNoSecret fails if any file under dir holds secret.
func walkNoSecret(t *testing.T, dir, secret string) {
	t.Helper()
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		b, _ := os.ReadFile(p)
		if bytes.Contains(b, []byte(secret)) {
			t.Errorf("%s holds the token", p)
		}
		return nil
	})
}

// perFile calls f with the number of the request for the same file (1 for its first).
func perFile(f func(fr *hubtest.FaultRequest, k int) bool) func(fr *hubtest.FaultRequest) bool {
	var mu sync.Mutex
	counts := map[*hubtest.File]int{}
	return func(fr *hubtest.FaultRequest) bool {
		mu.Lock()
		counts[fr.F]++
		k := counts[fr.F]
		mu.Unlock()
		return f(fr, k)
	}
}

// TestFaults blends the fixtures from a server that misbehaves, once per fault: each run
// ends in the local run's output, or in a clear error and no output at all.
func TestFaults(t *testing.T) {
	localBase, localTuned := testshared.Path(t, "fixtures/hf/tiny-llama-base"), testshared.Path(t, "fixtures/hf/tiny-llama-tuned")
	want := localBlend(t, localBase, localTuned)
	defer remote.SetRetryAfterUnit(20 * time.Millisecond)()

	type check func(t *testing.T, srv *hubtest.Server, rc *remote.Client)
	var mu sync.Mutex
	var lastStatus429 time.Time
	var waited time.Duration
	cases := []struct {
		name  string
		fault func(fr *hubtest.FaultRequest) bool
		mod   func(*remote.Options)
		// wantErr is nil when the blend must succeed.
		wantErr error
		errText string
		after   check
	}{
		{name: "connection cut mid-body", fault: func(fr *hubtest.FaultRequest) bool {
			if fr.N%3 == 1 && fr.Ranged && fr.End-fr.Off > 16 {
				fr.Partial(true)
				return true
			}
			return false
		}},
		{name: "truncated bodies", fault: func(fr *hubtest.FaultRequest) bool {
			if fr.N%4 == 2 && fr.Ranged && fr.End-fr.Off > 16 {
				fr.Partial(false)
				return true
			}
			return false
		}},
		{name: "burst of 503", fault: func(fr *hubtest.FaultRequest) bool {
			if fr.N >= 3 && fr.N < 9 {
				fr.Status(503, "")
				return true
			}
			return false
		}},
		{name: "429 with Retry-After", fault: func(fr *hubtest.FaultRequest) bool {
			mu.Lock()
			defer mu.Unlock()
			if !lastStatus429.IsZero() && waited == 0 {
				waited = time.Since(lastStatus429)
			}
			if fr.N == 4 {
				lastStatus429 = time.Now()
				fr.Status(429, "3") // 3 units: 60 ms here
				return true
			}
			return false
		}, after: func(t *testing.T, srv *hubtest.Server, rc *remote.Client) {
			// The Retry-After is the least the client waits before its next attempt
			// (other requests of the other file may arrive sooner; this one is the
			// only one in flight at the start).
			if rc.Stats().Retries != 1 {
				t.Errorf("%d retries, want 1", rc.Stats().Retries)
			}
		}},
		{name: "slow to answer", fault: func(fr *hubtest.FaultRequest) bool {
			if fr.N == 3 || fr.N == 7 {
				time.Sleep(300 * time.Millisecond)
				fr.Status(503, "")
				return true
			}
			return false
		}, mod: func(o *remote.Options) { o.HeaderTimeout = 50 * time.Millisecond }, after: func(t *testing.T, srv *hubtest.Server, rc *remote.Client) {
			if rc.Stats().Retries < 2 {
				t.Errorf("%d retries: the header timeouts did not happen", rc.Stats().Retries)
			}
		}},
		{name: "trickle below the stall rate", fault: func(fr *hubtest.FaultRequest) bool {
			if fr.N == 2 || fr.N == 5 {
				fr.Trickle(20*time.Millisecond, 5*time.Second)
				return true
			}
			return false
		}, mod: func(o *remote.Options) {
			o.StallWindow = 100 * time.Millisecond
			o.StallRate = 64 << 10
		}, after: func(t *testing.T, srv *hubtest.Server, rc *remote.Client) {
			if rc.Stats().Retries < 2 {
				t.Errorf("%d retries: the stalls were not detected", rc.Stats().Retries)
			}
		}},
		{name: "always stalled", fault: func(fr *hubtest.FaultRequest) bool {
			if fr.Ranged && fr.End-fr.Off > 1024 {
				fr.Trickle(20*time.Millisecond, 5*time.Second)
				return true
			}
			return false
		}, mod: func(o *remote.Options) {
			o.StallWindow = 50 * time.Millisecond
			o.StallRate = 64 << 10
			o.MaxRetries = 2
		}, wantErr: remote.ErrStalled, errText: "giving up after 3 attempts"},
		{name: "wrong Content-Range", fault: func(fr *hubtest.FaultRequest) bool {
			if fr.N == 6 && fr.Ranged {
				fr.Shifted(false)
				return true
			}
			return false
		}, wantErr: remote.ErrProtocol, errText: "the server sent"},
		{name: "short Content-Range", fault: func(fr *hubtest.FaultRequest) bool {
			if fr.N == 6 && fr.Ranged && fr.End-fr.Off > 2 {
				fr.Shifted(true)
				return true
			}
			return false
		}, wantErr: remote.ErrProtocol, errText: "the server sent"},
		{name: "ETag changes between requests", fault: perFile(func(fr *hubtest.FaultRequest, k int) bool {
			if k == 2 && fr.F.LFS {
				v := `"replaced"`
				fr.F.ETag.Store(&v)
			}
			return false
		}), wantErr: remote.ErrChanged, errText: "replaced while weft read it"},
		{name: "5xx forever", fault: func(fr *hubtest.FaultRequest) bool {
			if fr.N > 5 {
				fr.Status(502, "")
				return true
			}
			return false
		}, mod: func(o *remote.Options) { o.MaxRetries = 3 }, errText: "giving up after 4 attempts without progress"},
		{name: "Retry-After longer than the client waits", fault: func(fr *hubtest.FaultRequest) bool {
			if fr.N == 3 {
				fr.Status(429, "100000")
				return true
			}
			return false
		}, errText: "asks to retry after"},
		{name: "download URL expires", fault: perFile(func(fr *hubtest.FaultRequest, k int) bool {
			// The CDN refuses a file's third request as it would once its signature
			// expired: the client asks the Hub again.
			if k == 3 && strings.Contains(fr.R.Host, "localhost") {
				fr.Status(403, "")
				return true
			}
			return false
		}), after: func(t *testing.T, srv *hubtest.Server, rc *remote.Client) {
			if rc.Stats().Retries == 0 {
				t.Error("no request was refused")
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := hubtest.New(t)
			fixturePair(t, srv)
			srv.Fault = tc.fault
			mods := []func(*remote.Options){small}
			if tc.mod != nil {
				mods = append(mods, tc.mod)
			}
			rc := testClient(srv, mods...)
			parent := t.TempDir()
			out := filepath.Join(parent, "out")
			err := blendRemote(rc, "hf://weft-test/tiny-llama-base", "hf://weft-test/tiny-llama-tuned", out)
			st := rc.Stats()
			t.Logf("%d requests, %d retries; err: %v", st.Requests, st.Retries, err)
			if tc.wantErr == nil && tc.errText == "" {
				if err != nil {
					t.Fatal(err)
				}
				hubtest.SameOutput(t, want, out)
			} else {
				if err == nil {
					t.Fatal("no error")
				}
				if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
					t.Errorf("error is not %v: %v", tc.wantErr, err)
				}
				if !strings.Contains(err.Error(), tc.errText) {
					t.Errorf("error does not say %q: %v", tc.errText, err)
				}
				if !strings.Contains(err.Error(), "hf://weft-test/tiny-llama-") {
					t.Errorf("error does not name the file: %v", err)
				}
				if ents, _ := os.ReadDir(parent); len(ents) != 0 {
					t.Errorf("output left behind: %v", ents[0].Name())
				}
			}
			if tc.after != nil {
				tc.after(t, srv, rc)
			}
		})
	}
	if waited < 60*time.Millisecond {
		t.Errorf("the request after a 429 with Retry-After (60 ms) came %v after it", waited)
	}
}
