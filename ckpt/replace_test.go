package ckpt_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/ckpt"
	"github.com/weft-ml/weft/internal/synth"
)

// tiny returns the synthetic tiny model, in Hugging Face naming with its side files, or in
// GGUF naming with llama key-values.
func tiny(seed uint64, gguf bool) *weft.Checkpoint {
	s := synth.Tiny(seed)
	s.GGUF = gguf
	return s.Checkpoint()
}

// write writes c to path and returns the notes the write gave.
func write(t *testing.T, c *weft.Checkpoint, path string, opts ckpt.WriteOptions) ([]string, error) {
	t.Helper()
	var notes []string
	opts.Note = func(m string) { notes = append(notes, m) }
	return notes, ckpt.Write(context.Background(), c, path, opts)
}

func mustWrite(t *testing.T, c *weft.Checkpoint, path string, opts ckpt.WriteOptions) []string {
	t.Helper()
	notes, err := write(t, c, path, opts)
	if err != nil {
		t.Fatalf("writing %s: %v", path, err)
	}
	return notes
}

// ls lists a directory's entries, hidden ones included, sorted.
func ls(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	sort.Strings(out)
	return out
}

func equal(a, b []string) bool {
	return strings.Join(a, "\n") == strings.Join(b, "\n")
}

// total is the bytes of c's tensor data, to choose shard and split sizes.
func total(c *weft.Checkpoint) int64 {
	return c.Totals().Bytes
}

// sameTensors checks that the checkpoint at path holds c's tensors, byte for byte.
func sameTensors(t *testing.T, c *weft.Checkpoint, path string) {
	t.Helper()
	back, err := ckpt.Open(path)
	if err != nil {
		t.Fatalf("reopening %s: %v", path, err)
	}
	defer back.Close()
	if len(back.Tensors) != len(c.Tensors) {
		t.Fatalf("%s: %d tensors, want %d", path, len(back.Tensors), len(c.Tensors))
	}
	for _, w := range c.Tensors {
		g := back.Tensor(w.Name)
		if g == nil {
			t.Fatalf("%s: no tensor %s", path, w.Name)
		}
		n := w.MustSize()
		a, b := make([]byte, n), make([]byte, n)
		w.Data.ReadAt(a, 0)
		g.Data.ReadAt(b, 0)
		if !bytes.Equal(a, b) {
			t.Fatalf("%s: tensor %s differs", path, w.Name)
		}
	}
}

// userFiles puts a user's files in dir: notes.txt, README.md and sub/kept.txt, and returns
// a function checking they are still there, unchanged.
func userFiles(t *testing.T, dir string) func() {
	t.Helper()
	files := map[string]string{"notes.txt": "my notes\n", "README.md": "# my model card\n", filepath.Join("sub", "kept.txt"): "keep me\n"}
	for n, body := range files {
		p := filepath.Join(dir, n)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return func() {
		t.Helper()
		for n, body := range files {
			b, err := os.ReadFile(filepath.Join(dir, n))
			if err != nil || string(b) != body {
				t.Fatalf("user file %s: %q, %v", n, b, err)
			}
		}
	}
}

func joined(notes []string) string { return strings.Join(notes, "\n") }

// TestForceReplacesOnlyWeftFiles: --force into an existing Hugging Face directory replaces
// the shards, index and side files weft writes, removes the shards of an earlier set with
// another shard count (listing them), and leaves every other file alone.
func TestForceReplacesOnlyWeftFiles(t *testing.T) {
	c := tiny(1, false)
	out := filepath.Join(t.TempDir(), "out")
	shards := func() []string {
		var s []string
		for _, n := range ls(t, out) {
			if strings.HasPrefix(n, "model-") {
				s = append(s, n)
			}
		}
		return s
	}
	mustWrite(t, c, out, ckpt.WriteOptions{MaxShardSize: total(c) / 5})
	first := shards()
	sides := []string{"config.json", "generation_config.json", "model.safetensors.index.json", "tokenizer.json", "tokenizer_config.json"}
	want := append(append([]string(nil), first...), sides...)
	sort.Strings(want)
	if len(first) < 4 || !equal(ls(t, out), want) {
		t.Fatalf("first write: %v", ls(t, out))
	}
	check := userFiles(t, out)

	// Without Force: refused, nothing changes.
	if _, err := write(t, c, out, ckpt.WriteOptions{MaxShardSize: total(c) / 2}); !errors.Is(err, ckpt.ErrExists) {
		t.Fatalf("existing directory without Force: %v", err)
	}
	check()

	// Another shard count: every old shard is stale (none has the new set's names).
	notes := mustWrite(t, c, out, ckpt.WriteOptions{MaxShardSize: total(c) / 2, Force: true})
	second := shards()
	if len(second) == len(first) || len(second) < 2 {
		t.Fatalf("second write has %d shards, the first %d: choose other sizes", len(second), len(first))
	}
	want = append(append([]string{"README.md"}, second...), sides...)
	want = append(want, "notes.txt", "sub")
	sort.Strings(want)
	if got := ls(t, out); !equal(got, want) {
		t.Fatalf("after --force with %d shards:\n got %v\nwant %v", len(second), got, want)
	}
	for _, n := range first {
		if !strings.Contains(joined(notes), n) {
			t.Errorf("stale %s not listed in %q", n, notes)
		}
	}
	if !strings.Contains(joined(notes), "notes.txt") || !strings.Contains(joined(notes), "README.md") {
		t.Errorf("files left in place not listed: %q", notes)
	}
	check()
	sameTensors(t, c, out)

	// One file: every shard and the index are stale.
	notes = mustWrite(t, c, out, ckpt.WriteOptions{Force: true})
	want = []string{"README.md", "config.json", "generation_config.json", "model.safetensors", "notes.txt", "sub", "tokenizer.json", "tokenizer_config.json"}
	if got := ls(t, out); !equal(got, want) {
		t.Fatalf("after --force to one file:\n got %v\nwant %v", got, want)
	}
	if !strings.Contains(joined(notes), "model.safetensors.index.json") {
		t.Errorf("stale index not listed: %q", notes)
	}
	check()
	sameTensors(t, c, out)

	// And back to shards: the lone model.safetensors is stale (a directory holding both it and
	// an index is ambiguous, and refused by readers).
	notes = mustWrite(t, c, out, ckpt.WriteOptions{MaxShardSize: total(c) / 2, Force: true})
	if _, err := os.Stat(filepath.Join(out, "model.safetensors")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stale model.safetensors kept: %v (notes %q)", err, notes)
	}
	check()
	sameTensors(t, c, out)
}

// TestForceRemovesStaleSplitParts: a split GGUF rewritten with another part count, or as
// one file, loses its old parts (listed); files of other names stay.
func TestForceRemovesStaleSplitParts(t *testing.T) {
	c := tiny(2, true)
	dir := t.TempDir()
	out := filepath.Join(dir, "m.gguf")
	other := []string{"m.txt", "m2.gguf", "x-00001-of-00002.gguf"}
	for _, n := range other {
		os.WriteFile(filepath.Join(dir, n), []byte("not weft's"), 0o644)
	}
	mustWrite(t, c, out, ckpt.WriteOptions{SplitMaxSize: total(c) / 3})
	parts := ls(t, dir)
	var first []string
	for _, n := range parts {
		if strings.HasPrefix(n, "m-") {
			first = append(first, n)
		}
	}
	if len(first) < 3 || !strings.HasSuffix(first[0], "-of-"+fmt.Sprintf("%05d", len(first))+".gguf") {
		t.Fatalf("first split: %v", parts)
	}
	if _, err := write(t, c, out, ckpt.WriteOptions{SplitMaxSize: total(c) / 2}); !errors.Is(err, ckpt.ErrExists) {
		t.Fatalf("stale parts without Force: %v", err)
	}
	if !equal(ls(t, dir), parts) {
		t.Fatal("a refused write changed the directory")
	}
	notes := mustWrite(t, c, out, ckpt.WriteOptions{SplitMaxSize: total(c) / 2, Force: true})
	var second []string
	for _, n := range ls(t, dir) {
		if strings.HasPrefix(n, "m-") {
			second = append(second, n)
		}
	}
	if len(second) == len(first) || len(second) < 2 {
		t.Fatalf("second split has %d parts, the first %d: choose other sizes", len(second), len(first))
	}
	for i, n := range second {
		if want := fmt.Sprintf("m-%05d-of-%05d.gguf", i+1, len(second)); n != want {
			t.Fatalf("second split: %v (old parts kept?)", second)
		}
	}
	for _, n := range first {
		if !strings.Contains(joined(notes), n) {
			t.Errorf("stale part %s not listed: %q", n, notes)
		}
	}
	sameTensors(t, c, filepath.Join(dir, second[0]))
	notes = mustWrite(t, c, out, ckpt.WriteOptions{Force: true})
	want := append([]string{"m.gguf"}, other...)
	sort.Strings(want)
	if got := ls(t, dir); !equal(got, want) {
		t.Fatalf("after one file: %v, want %v (notes %q)", got, want, notes)
	}
	sameTensors(t, c, out)
	for _, n := range other {
		if b, _ := os.ReadFile(filepath.Join(dir, n)); string(b) != "not weft's" {
			t.Fatalf("%s changed", n)
		}
	}
}

// TestStaleShardsOfALoneFile: a .safetensors output sharded beside itself and rewritten as
// one file loses its shards and index.
func TestStaleShardsOfALoneFile(t *testing.T) {
	c := tiny(3, false)
	c.SideFiles = nil
	dir := t.TempDir()
	out := filepath.Join(dir, "w.safetensors")
	mustWrite(t, c, out, ckpt.WriteOptions{MaxShardSize: total(c) / 2})
	if got := ls(t, dir); len(got) != 4 || got[3] != "w.safetensors.index.json" {
		t.Fatalf("sharded: %v", got)
	}
	notes := mustWrite(t, c, out, ckpt.WriteOptions{Force: true})
	if got := ls(t, dir); !equal(got, []string{"w.safetensors"}) {
		t.Fatalf("after one file: %v", got)
	}
	if !strings.Contains(joined(notes), "w-00001-of-00003.safetensors") || !strings.Contains(joined(notes), "w.safetensors.index.json") {
		t.Fatalf("notes %q", notes)
	}
	sameTensors(t, c, out)
}

// TestOutputNamesAnyCase: extensions are recognised in any case; one file keeps the name
// given; a set is named after the stem; Written names what was written.
func TestOutputNamesAnyCase(t *testing.T) {
	c := tiny(4, false)
	c.SideFiles = nil
	g := tiny(4, true)
	dir := t.TempDir()
	for _, tc := range []struct {
		c       *weft.Checkpoint
		name    string
		opts    ckpt.WriteOptions
		files   []string
		written string
	}{
		{c, "UP.SAFETENSORS", ckpt.WriteOptions{}, []string{"UP.SAFETENSORS"}, "UP.SAFETENSORS"},
		{c, "Mixed.SafeTensors", ckpt.WriteOptions{}, []string{"Mixed.SafeTensors"}, "Mixed.SafeTensors"},
		{g, "UP.GGUF", ckpt.WriteOptions{}, []string{"UP.GGUF"}, "UP.GGUF"},
		{c, "S.SAFETENSORS", ckpt.WriteOptions{MaxShardSize: total(c) / 2}, []string{"S-00001-of-00003.safetensors", "S-00002-of-00003.safetensors", "S-00003-of-00003.safetensors", "S.safetensors.index.json"}, "S-00001-of-00003.safetensors, the first of 3 shards, and S.safetensors.index.json"},
		{g, "P.GGUF", ckpt.WriteOptions{SplitMaxSize: total(g) / 2}, []string{"P-00001-of-00003.gguf", "P-00002-of-00003.gguf", "P-00003-of-00003.gguf"}, "P-00001-of-00003.gguf, the first of 3 parts"},
	} {
		sub := filepath.Join(dir, strings.ToLower(tc.name))
		os.Mkdir(sub, 0o755)
		path := filepath.Join(sub, tc.name)
		kind, err := ckpt.OutputKind(path)
		if err != nil || kind == ckpt.KindHFDir {
			t.Fatalf("%s: kind %v, %v", tc.name, kind, err)
		}
		plan, err := ckpt.MakePlan(tc.c, path, tc.opts)
		if err != nil {
			t.Fatal(err)
		}
		if err := ckpt.Execute(context.Background(), tc.c, plan, tc.opts); err != nil {
			t.Fatal(err)
		}
		if got := ls(t, sub); !equal(got, tc.files) {
			t.Errorf("%s: wrote %v, want %v", tc.name, got, tc.files)
		}
		if w := plan.Written(); w != filepath.Join(sub, tc.written) {
			t.Errorf("%s: Written() = %q, want %q", tc.name, w, filepath.Join(sub, tc.written))
		}
		if strings.HasSuffix(tc.files[len(tc.files)-1], ".index.json") {
			// weft opens a lone-file shard set shard by shard: count the tensors.
			n := 0
			for _, f := range tc.files[:len(tc.files)-1] {
				x, err := ckpt.Open(filepath.Join(sub, f))
				if err != nil {
					t.Fatal(err)
				}
				n += len(x.Tensors)
				x.Close()
			}
			if n != len(tc.c.Tensors) {
				t.Errorf("%s: %d tensors in the shards, want %d", tc.name, n, len(tc.c.Tensors))
			}
			continue
		}
		sameTensors(t, tc.c, filepath.Join(sub, tc.files[0]))
	}
	// A directory's description names its shards, index and side files.
	hf := tiny(4, false)
	plan, err := ckpt.MakePlan(hf, filepath.Join(dir, "hf"), ckpt.WriteOptions{MaxShardSize: total(hf) / 2})
	if err != nil {
		t.Fatal(err)
	}
	if w, want := plan.Written(), filepath.Join(dir, "hf")+string(filepath.Separator)+": model-00001-of-00003.safetensors, the first of 3 shards; model.safetensors.index.json; 4 side files: config.json, tokenizer.json, tokenizer_config.json, generation_config.json"; w != want {
		t.Errorf("Written() = %q, want %q", w, want)
	}
}

// TestWrongKindOfPath: names that are not outputs, and existing paths of the other kind,
// get a message saying what is wrong, and nothing is written.
func TestWrongKindOfPath(t *testing.T) {
	dir := t.TempDir()
	c := tiny(5, false)
	file := filepath.Join(dir, "plainfile")
	os.WriteFile(file, []byte("x"), 0o644)
	os.Mkdir(filepath.Join(dir, "adir.gguf"), 0o755)
	os.Mkdir(filepath.Join(dir, "adir.safetensors"), 0o755)
	for _, tc := range []struct {
		path, want string
		c          *weft.Checkpoint
	}{
		{".", "names an existing directory", c},
		{"..", "names an existing directory", c},
		{"/", "names an existing directory", c},
		{filepath.Join(dir, ".safetensors"), "no name before the extension", c},
		{file, "is a file, not a directory: an output name without .safetensors or .gguf is written as a Hugging Face directory", c},
		{filepath.Join(dir, "adir.gguf"), "is a directory: an output name ending in .gguf is written as a file", tiny(5, true)},
		{filepath.Join(dir, "adir.safetensors"), "is a directory: an output name ending in .safetensors is written as a file", func() *weft.Checkpoint { x := tiny(5, false); x.SideFiles = nil; return x }()},
		{filepath.Join(file, "x.gguf"), "is a file, not a directory", tiny(5, true)},
	} {
		for _, force := range []bool{false, true} {
			_, err := write(t, tc.c, tc.path, ckpt.WriteOptions{Force: force})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s (force %v): %v, want %q", tc.path, force, err, tc.want)
			}
		}
	}
	if got := ls(t, dir); !equal(got, []string{"adir.gguf", "adir.safetensors", "plainfile"}) {
		t.Fatalf("left %v", got)
	}
}

// deadPID returns the pid of a process that has ended.
func deadPID(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skipf("cannot run true: %v", err)
	}
	return cmd.Process.Pid
}

// TestLeftoversOfDeadRunsRemoved: temporary files of an earlier run on the same target whose
// owner is gone are removed (and listed); a live owner's are kept and the write refused;
// an older weft's unowned ones are kept and listed; nothing else is touched.
func TestLeftoversOfDeadRunsRemoved(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("owners are not checked on Windows")
	}
	g := tiny(6, true)
	dir := t.TempDir()
	out := filepath.Join(dir, "m.gguf")
	dead := deadPID(t)
	mk := func(name string, dir bool) string {
		p := filepath.Join(filepath.Dir(out), name)
		if dir {
			os.Mkdir(p, 0o755)
			os.WriteFile(filepath.Join(p, "model.safetensors"), []byte("partial"), 0o644)
		} else {
			os.WriteFile(p, []byte("partial output"), 0o644)
		}
		return name
	}
	removed := []string{
		mk(fmt.Sprintf(".m.gguf.weft-tmp-%d-0-0-0123456789ab", dead), false),
		mk(fmt.Sprintf(".m-00002-of-00003.gguf.weft-tmp-%d-12345-0-0123456789ab", dead), false), // a member of an earlier set
	}
	if runtime.GOOS == "linux" {
		// A live pid with another start time: the pid was reused, the owner is gone.
		removed = append(removed, mk(fmt.Sprintf(".m.gguf.weft-tmp-%d-1-0-abcdefabcdef", os.Getpid()), false))
	}
	kept := []string{
		mk(".m.gguf.weft-tmp-0123456789ab", false),                                 // an older weft's: no owner recorded
		mk(fmt.Sprintf(".other.gguf.weft-tmp-%d-0-0-0123456789ab", dead), false),   // another target's
		mk(fmt.Sprintf(".m.gguf.weft-tmpX-%d-0-0-0123456789ab", dead), false),      // not weft's pattern
		mk(fmt.Sprintf("m.gguf.weft-tmp-%d-0-0-0123456789ab", dead), false),        // not hidden: not weft's
		mk(fmt.Sprintf(".m.gguf.weft-tmp-%d-0-0-0123456789ab-extra", dead), false), // not weft's pattern
	}
	notes := mustWrite(t, g, out, ckpt.WriteOptions{})
	got := ls(t, dir)
	want := append(append([]string(nil), kept...), "m.gguf")
	sort.Strings(want)
	if !equal(got, want) {
		t.Fatalf("after the write:\n got %v\nwant %v", got, want)
	}
	for _, r := range removed {
		if !strings.Contains(joined(notes), r) || !strings.Contains(joined(notes), "no longer running") {
			t.Errorf("removal of %s not listed: %q", r, notes)
		}
	}
	if !strings.Contains(joined(notes), ".m.gguf.weft-tmp-0123456789ab") || !strings.Contains(joined(notes), "recorded no owner") {
		t.Errorf("unowned leftover not mentioned: %q", notes)
	}

	// A live owner (this process, start time unknown): its files stay, and the write is
	// refused, since two runs writing one target would mix their files.
	live := mk(fmt.Sprintf(".m.gguf.weft-tmp-%d-0-0-00000000beef", os.Getpid()), false)
	before := ls(t, dir)
	if _, err := write(t, g, out, ckpt.WriteOptions{Force: true}); !errors.Is(err, ckpt.ErrBusy) || !strings.Contains(err.Error(), live) {
		t.Fatalf("live owner: %v", err)
	}
	if !equal(ls(t, dir), before) {
		t.Fatal("a refused write changed the directory")
	}

	// A Hugging Face directory's temporary directory, beside it.
	hf := tiny(6, false)
	tmpDir := mk(fmt.Sprintf(".hf.weft-tmp-%d-0-0-0123456789ab", dead), true)
	notes = mustWrite(t, hf, filepath.Join(dir, "hf"), ckpt.WriteOptions{})
	if _, err := os.Stat(filepath.Join(dir, tmpDir)); !errors.Is(err, os.ErrNotExist) || !strings.Contains(joined(notes), tmpDir) {
		t.Fatalf("leftover directory: %v, notes %q", err, notes)
	}
	sameTensors(t, hf, filepath.Join(dir, "hf"))
}

// TestTemporaryNamesRecordTheOwner: a write in progress names its files after this process.
func TestTemporaryNamesRecordTheOwner(t *testing.T) {
	dir := t.TempDir()
	g := tiny(7, true)
	var seen []string
	opts := ckpt.WriteOptions{Threads: 1, Progress: func(done, total int64) {
		if seen == nil {
			seen = ls(t, dir)
		}
	}}
	plan, err := ckpt.MakePlan(g, filepath.Join(dir, "m.gguf"), opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := ckpt.Execute(context.Background(), g, plan, opts); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 1 || !strings.HasPrefix(seen[0], fmt.Sprintf(".m.gguf.weft-tmp-%d-", os.Getpid())) {
		t.Fatalf("temporary files during the write: %v", seen)
	}
	if f := strings.Split(strings.TrimPrefix(seen[0], fmt.Sprintf(".m.gguf.weft-tmp-%d-", os.Getpid())), "-"); len(f) != 3 || (runtime.GOOS == "linux" && (f[0] == "0" || f[1] == "0")) {
		t.Fatalf("owner fields %v", f)
	}
}
