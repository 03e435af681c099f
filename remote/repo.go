package remote

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/weft-ml/weft"

	"github.com/weft-ml/weft/internal/ferr"
)

// Repo is an opened remote name, a weft.Source: a Hub repository at one commit (its files
// listed once, when it was opened), or the single file of an https:// URL. Files opened
// from it share one cache each until the Repo is closed.
type Repo struct {
	c      *Client
	name   Name
	commit string
	prefix string // display prefix of file names
	files  map[string]*entry
	dirs   map[string]bool

	mu     sync.Mutex
	open   map[string]*file
	closed bool
}

type entry struct {
	size   int64
	sha256 string
	url    string
}

var defaultClient = sync.OnceValue(func() *Client { return NewClient(FromEnv()) })

// Default returns the process's client configured from the environment (FromEnv), made on
// first use.
func Default() *Client { return defaultClient() }

// Open resolves a remote name. For hf:// names it resolves the revision to a commit and
// lists the repository at that commit; for https:// names it reads the file's first block
// (learning its size and version). It returns the Repo and the name inside it that the
// remote name points at: "" for a repository's root, a file, or a folder.
func (c *Client) Open(ctx context.Context, s string) (*Repo, string, error) {
	n, err := ParseName(s)
	if err != nil {
		return nil, "", err
	}
	if c.o.Context != nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		defer cancel()
		stop := context.AfterFunc(c.o.Context, cancel)
		defer stop()
	}
	r := &Repo{c: c, name: n, files: map[string]*entry{}, dirs: map[string]bool{"": true}, open: map[string]*file{}}
	if !n.Hub {
		return r.openURL(ctx)
	}
	r.commit, err = c.resolveRevision(ctx, n)
	if err != nil {
		return nil, "", err
	}
	ents, err := c.listTree(ctx, n, r.commit)
	if err != nil {
		return nil, "", err
	}
	// Files are named without the revision (URL and Commit record it): hf://ORG/NAME/PATH.
	root := n
	root.Path, root.Revision = "", ""
	r.prefix = root.String() + "/"
	for _, e := range ents {
		p := strings.Trim(e.Path, "/")
		if !plainPath(p) {
			continue // nothing weft would name: "..", empty elements, NUL or backslashes
		}
		switch e.Type {
		case "directory":
			r.addDir(p)
		case "file":
			en := &entry{size: e.Size, url: c.o.Endpoint + "/" + n.Repo + "/resolve/" + r.commit + "/" + escapePath(p)}
			if e.LFS != nil {
				en.size = e.LFS.Size
				en.sha256 = strings.ToLower(e.LFS.OID)
			}
			if en.size < 0 {
				return nil, "", ferr.New(ErrProtocol, "%s: unexpected response: the listing gives %s a negative size", n, p)
			}
			r.files[p] = en
			r.addDir(path.Dir(p))
		}
	}
	if n.Path != "" && r.files[n.Path] == nil && !r.dirs[n.Path] {
		return nil, "", &notFound{fmt.Sprintf("%s: no file or folder %q in repository %s at revision %s (commit %s)", n, n.Path, n.Repo, revName(n.Revision), r.commit[:12])}
	}
	return r, n.Path, nil
}

// plainPath reports whether p is a relative slash-separated path of plain elements.
func plainPath(p string) bool {
	if p == "" || strings.ContainsAny(p, "\\\x00") {
		return false
	}
	for _, el := range strings.Split(p, "/") {
		if el == "" || el == "." || el == ".." {
			return false
		}
	}
	return true
}

func (r *Repo) addDir(p string) {
	for p != "." && p != "" && !r.dirs[p] {
		r.dirs[p] = true
		p = path.Dir(p)
	}
}

// openURL opens an https:// name: one file, named after the last element of its path.
func (r *Repo) openURL(ctx context.Context) (*Repo, string, error) {
	base := path.Base(r.name.URL.Path)
	if base == "/" || base == "." || base == "" {
		base = "file"
	}
	r.prefix = ""
	display := Redact(r.name.URL)
	f := newFile(r.c, display, r.name.URL.String(), target{}, -1)
	if err := f.probe(ctx); err != nil {
		f.Close()
		return nil, "", fmt.Errorf("%s: %w", display, err)
	}
	r.files[base] = &entry{size: f.size, url: f.url}
	r.open[base] = f
	return r, base, nil
}

// URL returns the canonical remote name the Repo was opened with (no credentials, no
// query).
func (r *Repo) URL() string { return r.name.String() }

// Commit returns the commit a Hub repository's revision resolved to ("" for https://).
func (r *Repo) Commit() string { return r.commit }

// Files returns the paths of every file, sorted.
func (r *Repo) Files() []string {
	out := make([]string, 0, len(r.files))
	for p := range r.files {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// Local reports false: Paths are URLs.
func (r *Repo) Local() bool { return false }

// Path returns a file's remote name: hf://ORG/NAME/PATH (the revision is the Repo's), or
// the redacted URL.
func (r *Repo) Path(name string) string {
	name = clean(name)
	if !r.name.Hub {
		return Redact(r.name.URL)
	}
	if name == "" {
		return strings.TrimSuffix(r.prefix, "/")
	}
	return r.prefix + name
}

func clean(name string) string {
	if name == "." {
		return ""
	}
	return strings.Trim(name, "/")
}

func (r *Repo) missing(name string) error {
	if !r.name.Hub {
		return &notFound{fmt.Sprintf("%s: no file %q beside it (a URL names one file)", Redact(r.name.URL), name)}
	}
	return &notFound{fmt.Sprintf("%s: no such file in repository %s at revision %s", r.Path(name), r.name.Repo, revName(r.name.Revision))}
}

// Stat describes a file or folder.
func (r *Repo) Stat(name string) (fs.FileInfo, error) {
	name = clean(name)
	if e := r.files[name]; e != nil {
		return info{name: path.Base(name), size: e.size}, nil
	}
	if r.dirs[name] {
		return info{name: path.Base(name), dir: true}, nil
	}
	return nil, r.missing(name)
}

// ReadDir lists a folder's files and folders, sorted by name.
func (r *Repo) ReadDir(name string) ([]fs.DirEntry, error) {
	name = clean(name)
	if !r.dirs[name] {
		if r.files[name] != nil {
			return nil, fmt.Errorf("%s: not a folder", r.Path(name))
		}
		return nil, r.missing(name)
	}
	parent := func(p string) string {
		d := path.Dir(p)
		if d == "." {
			return ""
		}
		return d
	}
	var out []fs.DirEntry
	for p, e := range r.files {
		if parent(p) == name {
			out = append(out, fs.FileInfoToDirEntry(info{name: path.Base(p), size: e.size}))
		}
	}
	for p := range r.dirs {
		if p != "" && parent(p) == name {
			out = append(out, fs.FileInfoToDirEntry(info{name: path.Base(p), dir: true}))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name() < out[j].Name() })
	return out, nil
}

// Open opens a file for reading at any offset. Every Open of one name shares one cache;
// closing the returned file does nothing until the Repo is closed.
func (r *Repo) Open(name string) (weft.SourceFile, error) {
	name = clean(name)
	e := r.files[name]
	if e == nil {
		if r.dirs[name] {
			return nil, fmt.Errorf("%s: %w", r.Path(name), weft.ErrNotRegular)
		}
		return nil, r.missing(name)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, fmt.Errorf("%s: %w", r.Path(name), os.ErrClosed)
	}
	f := r.open[name]
	if f == nil {
		// Errors of reads leave the file's name to the reader, which names it.
		t := target{repo: r.name.Repo, rev: revName(r.name.Revision), file: name, hub: true}
		f = newFile(r.c, r.Path(name), e.url, t, e.size)
		f.commit, f.sha256 = r.commit, e.sha256
		r.open[name] = f
	}
	return handle{f}, nil
}

// Close cancels every request of the Repo's files and frees their memory.
func (r *Repo) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	for _, f := range r.open {
		f.Close()
	}
	r.open = map[string]*file{}
	return nil
}

// handle is a file as Open returns it: Close is the Repo's.
type handle struct{ *file }

func (handle) Close() error { return nil }

type info struct {
	name string
	size int64
	dir  bool
}

func (i info) Name() string { return i.name }
func (i info) Size() int64  { return i.size }
func (i info) Mode() fs.FileMode {
	if i.dir {
		return fs.ModeDir | 0o555
	}
	return 0o444
}
func (i info) ModTime() time.Time { return time.Time{} }
func (i info) IsDir() bool        { return i.dir }
func (i info) Sys() any           { return nil }

// probe reads the first block of an https:// file, learning its size and version, and
// keeps the block for the header readers.
func (f *file) probe(ctx context.Context) error {
	c := f.c
	var data []byte
	err := c.retry(ctx, f.display, "", func() (bool, error) {
		if err := c.acquire(ctx); err != nil {
			return false, err
		}
		defer c.release()
		rctx, cancel := context.WithTimeout(ctx, c.o.RequestTimeout)
		defer cancel()
		req, err := newRequest(rctx, f.url)
		if err != nil {
			return false, err
		}
		req.Header.Set("Range", fmt.Sprintf("bytes=0-%d", c.o.BlockSize-1))
		resp, err := c.hc.Do(req)
		if err != nil {
			return false, transportError("", err)
		}
		defer resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusPartialContent:
			a, b, total, ok := parseContentRange(resp.Header.Get("Content-Range"))
			if !ok || a != 0 || total < 0 || b != min(c.o.BlockSize, total)-1 {
				return false, fmt.Errorf("%w: asked for bytes 0-%d, got Content-Range %q", ErrProtocol, c.o.BlockSize-1, cleanHeader(resp.Header.Get("Content-Range")))
			}
			f.size = total
		case http.StatusOK:
			// No range support: acceptable only for a file no larger than the block.
			if resp.ContentLength < 0 || resp.ContentLength > c.o.BlockSize {
				return false, fmt.Errorf("%w: the server does not serve byte ranges (HTTP 200 to a range request), which weft needs to stream the file; download it instead", ErrProtocol)
			}
			f.size = resp.ContentLength
		case http.StatusRequestedRangeNotSatisfiable:
			if strings.TrimSpace(resp.Header.Get("Content-Range")) == "bytes */0" {
				f.size = 0 // an empty file has no byte to ask for
				return false, nil
			}
			return false, c.statusError(resp, f.t)
		default:
			return false, c.statusError(resp, f.t)
		}
		if err := f.checkIdentity(resp); err != nil {
			return false, err
		}
		if ce := resp.Header.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
			return false, fmt.Errorf("%w: the server encoded the body (Content-Encoding %q) though asked not to", ErrProtocol, ce)
		}
		buf := make([]byte, min(c.o.BlockSize, f.size))
		n, err := io.ReadFull(resp.Body, buf)
		c.received.Add(int64(n))
		if err != nil {
			return n > 0, &retryable{err: fmt.Errorf("first block: %w", err)}
		}
		data = buf
		return true, nil
	})
	if err != nil {
		return err
	}
	if len(data) > 0 {
		f.mu.Lock()
		e := f.newExtent(0, int64(len(data)), true)
		copy(e.buf, data)
		close(e.done)
		f.exts = append(f.exts, e)
		f.hdrNext, f.hdrBlock = int64(len(data)), c.o.BlockSize
		f.mu.Unlock()
	}
	return nil
}
