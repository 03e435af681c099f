package weft

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
)

// Source is a read-only tree of checkpoint files: a local directory (LocalDir), or a remote
// repository or URL (package remote). The format readers open checkpoints from a Source, so
// local and remote files go through the same code. Names are slash-separated and relative to
// the source's root ("" or "." is the root itself).
type Source interface {
	// Open opens the named regular file. A missing file is an error wrapping
	// fs.ErrNotExist.
	Open(name string) (SourceFile, error)
	// Stat describes the named file or directory. A missing one is an error wrapping
	// fs.ErrNotExist.
	Stat(name string) (fs.FileInfo, error)
	// ReadDir lists the entries of the named directory, sorted by name.
	ReadDir(name string) ([]fs.DirEntry, error)
	// Path returns what the named file is called in messages, in Tensor.File and
	// Checkpoint.Files: its local path, or its URL for a remote source.
	Path(name string) string
	// Local reports whether Path names files on the local file system (which the write
	// path stats to refuse writing over an input).
	Local() bool
}

// SourceFile is an opened file of a Source: its bytes at any offset, safe for concurrent
// ReadAt calls, until Close.
type SourceFile interface {
	io.ReaderAt
	io.Closer
	// Size returns the file's size in bytes.
	Size() int64
}

// LocalDir returns the Source of the local directory dir: Path(name) is dir joined with
// name.
func LocalDir(dir string) Source { return localDir(dir) }

type localDir string

func (d localDir) Path(name string) string {
	if name == "" || name == "." {
		return string(d)
	}
	return filepath.Join(string(d), filepath.FromSlash(name))
}

func (d localDir) Local() bool { return true }

func (d localDir) Stat(name string) (fs.FileInfo, error) {
	st, err := os.Stat(d.Path(name))
	return st, PathError(err)
}

func (d localDir) ReadDir(name string) ([]fs.DirEntry, error) {
	ents, err := os.ReadDir(d.Path(name))
	return ents, PathError(err)
}

func (d localDir) Open(name string) (SourceFile, error) {
	p := d.Path(name)
	f, err := os.Open(p)
	if err != nil {
		return nil, PathError(err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, PathError(err)
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s: %w", p, ErrNotRegular)
	}
	return &localFile{File: f, size: st.Size()}, nil
}

// PathError returns err with the message of a *fs.PathError ("open PATH: no such file or
// directory") in the form of every other weft message about a file, "PATH: no such file or
// directory"; errors.Is and errors.As still find the *fs.PathError and its cause. Other
// errors are returned unchanged.
func PathError(err error) error {
	var pe *fs.PathError
	if err == nil || !errors.As(err, &pe) || err.Error() != pe.Error() {
		return err
	}
	return &pathError{pe}
}

type pathError struct{ pe *fs.PathError }

func (e *pathError) Error() string { return e.pe.Path + ": " + e.pe.Err.Error() }
func (e *pathError) Unwrap() error { return e.pe }

// ErrNotRegular is returned when a name that must be a regular file is something else (a
// directory, a device, a pipe).
var ErrNotRegular = errors.New("not a regular file")

type localFile struct {
	*os.File
	size int64
}

func (f *localFile) Size() int64 { return f.size }

// IsFile reports whether name exists in src as a regular file; errors other than "does not
// exist" are returned.
func IsFile(src Source, name string) (bool, error) {
	st, err := src.Stat(name)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return st.Mode().IsRegular(), nil
}

// ReadSmallFile reads a whole file of src that must hold at most max bytes (an index, a
// config), refusing a larger one before reading it.
func ReadSmallFile(src Source, name string, max int64) ([]byte, error) {
	f, err := src.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if f.Size() > max {
		return nil, fmt.Errorf("%s: %d bytes, more than the %d allowed", src.Path(name), f.Size(), max)
	}
	buf := make([]byte, f.Size())
	n, err := f.ReadAt(buf, 0)
	if n == len(buf) {
		return buf, nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return nil, fmt.Errorf("%s: %w", src.Path(name), err)
}

// MaxSourceSideFile bounds a side file read through SideFileOpener: side files are read
// whole into memory (configs, tokenizers), and a remote repository may hold anything.
const MaxSourceSideFile = 512 << 20

// SideFileOpener returns a SideFile.Opener that reads the named file of src, refusing one
// larger than MaxSourceSideFile.
func SideFileOpener(src Source, name string) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) {
		f, err := src.Open(name)
		if err != nil {
			return nil, err
		}
		if f.Size() > MaxSourceSideFile {
			f.Close()
			return nil, fmt.Errorf("%s: a side file of %d bytes, more than the %d weft reads into memory", src.Path(name), f.Size(), int64(MaxSourceSideFile))
		}
		return struct {
			io.Reader
			io.Closer
		}{io.NewSectionReader(f, 0, f.Size()), f}, nil
	}
}

// Open opens the side file's contents: Data when set, else the Opener when set (side files
// of remote checkpoints), else the file at Path.
func (s *SideFile) Open() (io.ReadCloser, error) {
	switch {
	case s.Data != nil:
		return io.NopCloser(bytes.NewReader(s.Data)), nil
	case s.Opener != nil:
		return s.Opener()
	}
	return os.Open(s.Path)
}

// ListSideFilesIn is ListSideFiles over a Source: the regular, non-hidden files of the
// directory dir of src that are not weight files or weight indexes, sorted by name. Path is
// the source's name for each (a local path, or a URL); side files of a source that is not
// local get an Opener that reads them through it.
func ListSideFilesIn(src Source, dir string) ([]SideFile, error) {
	ents, err := src.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []SideFile
	for _, e := range ents {
		name := e.Name()
		if len(name) > 0 && name[0] == '.' || IsWeightFileName(name) {
			continue
		}
		rel := name
		if dir != "" && dir != "." {
			rel = path.Join(dir, name)
		}
		st, err := src.Stat(rel)
		if err != nil || !st.Mode().IsRegular() {
			continue
		}
		sf := SideFile{Name: name, Path: src.Path(rel)}
		if !src.Local() {
			sf.Opener = SideFileOpener(src, rel)
		}
		out = append(out, sf)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}
