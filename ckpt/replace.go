package ckpt

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/internal/text"
)

// ErrInputOutput is returned when an output would overwrite an input.
var ErrInputOutput = errors.New("output would overwrite an input")

// ErrExists is wrapped by the error of a write whose output (or a member of an earlier set
// of the same name) already exists and WriteOptions.Force is not set.
var ErrExists = errors.New("the output already exists")

// ErrBusy is wrapped by the error of a write whose target another running weft is writing
// (its temporary files are there, and their owner process is alive).
var ErrBusy = errors.New("another weft is writing this output")

// Execute writes a checkpoint according to a plan made by MakePlan.
//
// A new output appears only when complete. A file, or a set of files (shards and index,
// split parts), is written under temporary names beside the targets
// (.NAME.weft-tmp-OWNER-RAND) and each is renamed into place once all of them are complete;
// a new directory (or an empty one) is built whole under a temporary name beside it and put
// in place by one rename. On any error or cancellation the temporary files are removed and
// nothing is left.
//
// Replacing (Force) touches only what weft writes: the files this write produces, and the
// members of an earlier set of the same stem that it does not produce (model-00001-of-00003
// when the new set has two shards, model.safetensors when it is sharded, an index when it is
// not; out-00001-of-00004.gguf for out.gguf), which are removed after the new files are in
// place and listed through WriteOptions.Note. Any other file in an existing directory (notes,
// a model card the input does not have, subdirectories) stays as it is. What is not atomic
// when replacing into an existing directory or over an existing set: the new files are
// renamed into place one at a time (data files, then side files, then the index, which thus
// names only files already in place), then the stale members are removed. Each file is
// always whole, old or new, but a crash between two renames leaves a mix of old and new
// files in the directory, and between the last rename and the removals, the new set beside
// the remains of the old one.
//
// Leftover temporary files of earlier runs for the same target whose owner process is gone
// (see tempMarker) are removed first and listed through Note; those of a live run make the
// write fail with ErrBusy; those of an older weft that recorded no owner are listed and kept.
func Execute(ctx context.Context, c *weft.Checkpoint, p *Plan, opts WriteOptions) (err error) {
	return ExecuteMany(ctx, []Output{{Checkpoint: c, Path: p.Target, Options: opts}}, []*Plan{p},
		ManyOptions{Threads: opts.Threads, Progress: opts.Progress, ChunkElems: opts.ChunkElems, ChunkBytes: opts.ChunkBytes})
}

// target is one output of a pass: what it writes, and where its files stand.
type target struct {
	c     *weft.Checkpoint
	p     *Plan
	opts  WriteOptions
	share Share
	sv    *survey
	st    *staging
	// files are the staged files of the layout; nil for those another part writes.
	files  []*os.File
	create func(name string) (*os.File, error) // a staged file for p.Dir/name
}

func (t *target) fileName(i int) string { return filepath.Join(t.p.Dir, t.p.Layout.Files[i].Name) }

// look surveys the target's place and clears the leftovers of dead runs (see Execute).
func (t *target) look() error {
	sv, err := t.p.survey(t.c, t.opts, t.share)
	if err != nil {
		return err
	}
	t.sv = sv
	for _, l := range sv.dead {
		size := ""
		if st, err := os.Lstat(l.path); err == nil && st.Mode().IsRegular() {
			size = ", " + text.Bytes(st.Size())
		}
		if err := os.RemoveAll(l.path); err != nil {
			return fmt.Errorf("removing %s, left by a weft run that ended: %w", l.path, err)
		}
		t.opts.note("removed %s, left by weft process %d which is no longer running%s", l.path, l.owner.pid, size)
	}
	for _, l := range sv.unowned {
		t.opts.note("left %s in place: a temporary file of an older weft, which recorded no owner; remove it if no weft is writing %s", l.path, t.p.Target)
	}
	if sv.inPlace && len(sv.kept) > 0 && t.share.All() {
		t.opts.note("left in place in %s (weft does not write them): %s", t.p.Dir, summarise(sv.kept, 8))
	}
	return nil
}

// stage creates the target's temporary files at their full size.
func (t *target) stage() error {
	t.st = &staging{}
	p := t.p
	if p.Kind == KindHFDir && !t.sv.inPlace && t.share.All() {
		if err := os.MkdirAll(filepath.Dir(p.Dir), 0o755); err != nil {
			return err
		}
		workDir, err := t.st.tempDir(p.Dir)
		if err != nil {
			return err
		}
		t.create = func(name string) (*os.File, error) {
			f, err := os.OpenFile(filepath.Join(workDir, name), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
			if err == nil {
				t.st.closers = append(t.st.closers, f)
			}
			return f, err
		}
	} else {
		t.create = func(name string) (*os.File, error) { return t.st.tempFile(filepath.Join(p.Dir, name)) }
	}
	t.files = make([]*os.File, len(p.Layout.Files))
	for i, lf := range p.Layout.Files {
		if !t.share.Files[i] {
			continue
		}
		f, err := t.create(lf.Name)
		if err != nil {
			return err
		}
		t.files[i] = f
		if err := f.Truncate(lf.Size); err != nil {
			return fmt.Errorf("%s: %w", lf.Name, err)
		}
	}
	return nil
}

// finish writes the headers (with the deferred values), syncs the data files, writes the
// side files and the index, and puts everything in place.
func (t *target) finish(values map[*weft.Checkpoint]string) error {
	p := t.p
	headers, err := patchHeaders(t.c, p, values)
	if err != nil {
		return err
	}
	for i, f := range t.files {
		if f == nil {
			continue
		}
		name := p.Layout.Files[i].Name
		if _, err := f.WriteAt(headers[i], 0); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if err := f.Sync(); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		adviseWritten(f)
	}
	if t.share.Extras {
		var side []weft.SideFile
		if p.Kind == KindHFDir {
			side = append(side, t.c.SideFiles...)
		}
		side = append(side, p.Layout.Extra...) // the index last: it names the shards
		for _, sf := range side {
			f, err := t.create(sf.Name)
			if err != nil {
				return err
			}
			if err := writeSide(f, sf); err != nil {
				return fmt.Errorf("%s: %w", sf.Name, err)
			}
		}
	}
	return t.st.commit(p, t.sv, t.opts)
}

func (t *target) abort() {
	if t.st != nil {
		t.st.abort()
	}
}

// writeSide writes a side file's contents (its Data, or the file at its Path) to f.
func writeSide(f *os.File, sf weft.SideFile) error {
	if sf.Data != nil {
		if _, err := f.Write(sf.Data); err != nil {
			return err
		}
		return f.Sync()
	}
	src, err := sf.Open() // a local file, or one read through a remote checkpoint's source
	if err != nil {
		return err
	}
	defer src.Close()
	if _, err := io.Copy(f, src); err != nil {
		return fmt.Errorf("%s: %w", sf.Path, err)
	}
	return f.Sync()
}

// setPattern matches the name of every file a write of p can produce in p.Dir, whatever its
// shard or part count: for the stem S, S.gguf and S-NNNNN-of-NNNNN.gguf (GGUF), or
// S.safetensors, S-NNNNN-of-NNNNN.safetensors and S.safetensors.index.json (safetensors,
// S = model in a directory); extensions in any case.
func (p *Plan) setPattern() *regexp.Regexp {
	q := regexp.QuoteMeta(p.stem)
	if p.Kind == KindGGUF {
		return regexp.MustCompile(`^` + q + `(?:-\d{5}-of-\d{5})?(?i:\.gguf)$`)
	}
	return regexp.MustCompile(`^` + q + `(?:(?:-\d{5}-of-\d{5})?(?i:\.safetensors)|(?i:\.safetensors\.index\.json))$`)
}

// names returns the names of every file the plan puts in p.Dir.
func (p *Plan) names() []string { return p.namesOf(p.all()) }

// namesOf returns the names of the files of the plan a share writes.
func (p *Plan) namesOf(sh Share) []string {
	var out []string
	for i, f := range p.Layout.Files {
		if sh.Files[i] {
			out = append(out, f.Name)
		}
	}
	if sh.Extras {
		if p.Kind == KindHFDir {
			out = append(out, p.SideFiles...)
		}
		for _, e := range p.Layout.Extra {
			out = append(out, e.Name)
		}
	}
	return out
}

// leftover is a temporary file or directory of an earlier run.
type leftover struct {
	path  string
	owner owner
}

// survey is what is at an output's place before it is written.
type survey struct {
	// inPlace: the output is a Hugging Face directory that exists and holds files, so files
	// are replaced in it one by one rather than the directory being put in place whole.
	inPlace bool
	// replaced are the existing files this write replaces; stale the existing members of an
	// earlier set of the same stem that it does not produce; kept (in an existing
	// directory) everything else, left alone.
	replaced, stale, kept []string
	// dead, unowned: leftover temporary files of earlier runs for this target whose owner
	// is gone, or unknown.
	dead, unowned []leftover
}

// survey looks at the output's place: refuses outputs that are inputs (same path, hard
// link or symlink), that hold an input, that are of the wrong kind (a file where a
// directory goes, or the reverse), that exist without Force, or that a live weft is writing;
// and finds the files a write replaces, the stale set members it removes and the leftovers
// of killed runs.
//
// A part of a write in parts (a share that is not the whole output) looks only at its own
// files: the set's other files are other parts' (written, or being written, beside it), and
// only the part that writes the index removes the stale members of an earlier set.
func (p *Plan) survey(c *weft.Checkpoint, opts WriteOptions, sh Share) (*survey, error) {
	sv := &survey{}
	want := map[string]bool{}
	for _, n := range p.namesOf(sh) {
		want[n] = true
	}
	split := !sh.All()
	others := map[string]bool{}
	if split {
		for _, n := range p.names() {
			if !want[n] {
				others[n] = true
			}
		}
	}
	pat := p.setPattern()
	var busy []leftover
	// classify sorts a temporary name of this target into dead, unowned or busy.
	classify := func(path string, o owner, known bool) {
		switch {
		case !known:
			sv.unowned = append(sv.unowned, leftover{path, o})
		case isRegistered(path):
			// this process's own write, still under way (never the case for one Execute)
		case o.alive():
			busy = append(busy, leftover{path, o})
		default:
			sv.dead = append(sv.dead, leftover{path, o})
		}
	}
	dirExists := false
	if st, err := os.Stat(p.Dir); err == nil {
		if !st.IsDir() {
			if p.Kind == KindHFDir {
				return nil, fmt.Errorf("%s is a file, not a directory: an output name without .safetensors or .gguf is written as a Hugging Face directory; name a NAME.safetensors or NAME.gguf file to write a file", p.Dir)
			}
			return nil, fmt.Errorf("%s: cannot be written: %s is a file, not a directory", p.Target, p.Dir)
		}
		dirExists = true
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if dirExists {
		ents, err := os.ReadDir(p.Dir)
		if err != nil {
			return nil, err
		}
		for _, e := range ents {
			n := e.Name()
			path := filepath.Join(p.Dir, n)
			if final, o, known, ok := parseTemp(n); ok && (want[final] || pat.MatchString(final)) {
				if !split || want[final] {
					classify(path, o, known)
				}
				continue
			}
			isDir := e.IsDir()
			switch {
			case split && (others[n] || !want[n] && (!sh.Extras || !pat.MatchString(n))):
				// another part's, or not this part's to look at
			case want[n] && isDir:
				if p.Kind == KindHFDir {
					return nil, fmt.Errorf("%s is a directory; weft would write its file %s there", path, n)
				}
				return nil, fmt.Errorf("%s is a directory: an output name ending in %s is written as a file; name a file, or a directory without that extension", path, strings.ToLower(filepath.Ext(n)))
			case want[n]:
				sv.replaced = append(sv.replaced, path)
			case pat.MatchString(n) && !isDir:
				sv.stale = append(sv.stale, path)
			case p.Kind == KindHFDir && isDir:
				sv.kept = append(sv.kept, n+string(filepath.Separator))
			case p.Kind == KindHFDir:
				sv.kept = append(sv.kept, n)
			}
		}
		sv.inPlace = p.Kind == KindHFDir && len(sv.replaced)+len(sv.stale)+len(sv.kept)+len(sv.unowned)+len(busy) > 0
	}
	if split {
		sv.inPlace = true // parts write their files into the directory one by one
	}
	if p.Kind == KindHFDir && !split {
		// A new directory is built beside itself under a temporary name.
		parent, base := filepath.Dir(p.Dir), filepath.Base(p.Dir)
		if ents, err := os.ReadDir(parent); err == nil {
			for _, e := range ents {
				if final, o, known, ok := parseTemp(e.Name()); ok && final == base {
					classify(filepath.Join(parent, e.Name()), o, known)
				}
			}
		}
	}
	if err := p.checkInputs(c, opts, sv); err != nil {
		return nil, err
	}
	if len(busy) > 0 {
		return nil, fmt.Errorf("%s: %w now (process %d, temporary file %s); wait for it to finish, or stop it", p.Target, ErrBusy, busy[0].owner.pid, busy[0].path)
	}
	if !opts.Force {
		switch {
		case p.Kind == KindHFDir && sv.inPlace && !split:
			var all []string
			for _, r := range append(append([]string(nil), sv.replaced...), sv.stale...) {
				all = append(all, filepath.Base(r))
			}
			all = append(all, sv.kept...)
			sort.Strings(all)
			return nil, fmt.Errorf("%s: %w and holds files (%s)", p.Dir, ErrExists, summarise(all, 6))
		case len(sv.replaced) > 0 && len(sv.stale) == 0:
			return nil, fmt.Errorf("%s: %w", summarise(sv.replaced, 3), ErrExists)
		case len(sv.replaced) > 0:
			return nil, fmt.Errorf("%s: %w (with members of an earlier set of the same name: %s)", p.Target, ErrExists, summarise(append(append([]string(nil), sv.replaced...), sv.stale...), 4))
		case len(sv.stale) > 0:
			return nil, fmt.Errorf("%s: %w as an earlier set of the same name (%s)", p.Target, ErrExists, summarise(sv.stale, 4))
		}
	}
	return sv, nil
}

// checkInputs refuses a write that would replace or remove an input's file, or that writes
// into a directory holding an input.
func (p *Plan) checkInputs(c *weft.Checkpoint, opts WriteOptions, sv *survey) error {
	var inputs []string
	add := func(ck *weft.Checkpoint) {
		inputs = append(inputs, ck.Files...)
		if ck.Dir != "" {
			inputs = append(inputs, ck.Dir)
		}
		inputs = append(inputs, ck.Path)
		for _, sf := range ck.SideFiles {
			if sf.Path != "" {
				inputs = append(inputs, sf.Path)
			}
		}
	}
	add(c)
	for _, in := range opts.Inputs {
		add(in)
	}
	// The files the tensors are read from, through the computed tensors that declare their
	// sources (a checkpoint derived in memory names no files of its own).
	files := map[string]bool{}
	for _, t := range c.Tensors {
		weft.Leaves(t, func(l *weft.Tensor) {
			if l.File != "" && !files[l.File] {
				files[l.File] = true
				inputs = append(inputs, l.File)
			}
		})
	}
	outs := append(append([]string(nil), sv.replaced...), sv.stale...)
	if p.Kind == KindHFDir {
		outs = append(outs, p.Dir)
	}
	for _, out := range outs {
		ost, err := os.Stat(out)
		if err != nil {
			continue // does not exist
		}
		for _, in := range inputs {
			ist, err := os.Stat(in)
			if err != nil {
				continue
			}
			if os.SameFile(ost, ist) {
				return fmt.Errorf("%s: %w %s", out, ErrInputOutput, in)
			}
			if ost.IsDir() {
				if rel, err := filepath.Rel(absEval(out), absEval(in)); err == nil && !strings.HasPrefix(rel, "..") {
					return fmt.Errorf("%s: %w: the output directory holds input %s", out, ErrInputOutput, in)
				}
			}
		}
	}
	return nil
}

func absEval(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		p = a
	}
	if e, err := filepath.EvalSymlinks(p); err == nil {
		p = e
	}
	return p
}

// staging tracks temporary files and directories until they are committed or aborted.
type staging struct {
	temps   []string // temp path per final path, in order
	finals  []string
	tmpDir  string
	closers []io.Closer
}

// tempFile creates a temporary file beside final, to be renamed to it on commit.
func (s *staging) tempFile(final string) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(final), 0o755); err != nil {
		return nil, err
	}
	tmp := tempName(final)
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, err
	}
	register(tmp)
	s.temps = append(s.temps, tmp)
	s.finals = append(s.finals, final)
	s.closers = append(s.closers, f)
	return f, nil
}

// tempDir creates a temporary directory beside final, to be renamed to it on commit.
func (s *staging) tempDir(final string) (string, error) {
	tmp := tempName(filepath.Clean(final))
	if err := os.Mkdir(tmp, 0o755); err != nil {
		return "", err
	}
	register(tmp)
	s.tmpDir = tmp
	return tmp, nil
}

func (s *staging) closeAll() {
	for _, c := range s.closers {
		c.Close()
	}
	s.closers = nil
}

func (s *staging) abort() {
	s.closeAll()
	for _, t := range s.temps {
		os.Remove(t)
		unregister(t)
	}
	s.temps = nil
	if s.tmpDir != "" {
		os.RemoveAll(s.tmpDir)
		unregister(s.tmpDir)
		s.tmpDir = ""
	}
}

// commit puts the staged files in place (see Execute for the order and what is atomic) and
// removes the stale members of an earlier set.
func (s *staging) commit(p *Plan, sv *survey, opts WriteOptions) error {
	s.closeAll()
	if s.tmpDir != "" {
		target := p.Dir
		if st, err := os.Stat(target); err == nil && st.IsDir() {
			// Empty (survey said so): Remove fails on anything else, and nothing is lost.
			if err := os.Remove(target); err != nil {
				return err
			}
		}
		if err := os.Rename(s.tmpDir, target); err != nil {
			return err
		}
		unregister(s.tmpDir)
		s.tmpDir = ""
		syncDir(filepath.Dir(target))
		return nil
	}
	for i, t := range s.temps {
		if err := os.Rename(t, s.finals[i]); err != nil {
			return err
		}
		unregister(t)
	}
	var written []os.FileInfo
	for _, f := range s.finals {
		if st, err := os.Stat(f); err == nil {
			written = append(written, st)
		}
	}
	s.temps = nil
	for _, old := range sv.stale {
		if st, err := os.Lstat(old); err == nil && slices.ContainsFunc(written, func(w os.FileInfo) bool { return os.SameFile(w, st) }) {
			continue // a file just written, under another spelling (a case-insensitive file system)
		}
		if err := os.Remove(old); err != nil {
			return fmt.Errorf("wrote %s, but could not remove %s, a member of an earlier set of the same name: %w", p.Target, old, err)
		}
		opts.note("removed %s, a member of an earlier set of the same name that this write replaces", old)
	}
	syncDir(p.Dir)
	return nil
}

// syncDir flushes a directory's entries (the renames) to disk where the system allows it.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}
