// Package hubtest is a Hugging Face Hub look-alike for tests, on loopback only: the
// revision and tree APIs, resolve URLs with Range support, large ("LFS") files redirected
// to a second server on another host name (a CDN), gated repositories, and fault injection
// on data requests. It counts what it serves, byte by byte, so tests can check how much was
// read and that nothing was read twice.
package hubtest

import (
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Server is the Hub (on 127.0.0.1) and its CDN (on "localhost", another host for the
// client, so a redirect there is cross-host).
type Server struct {
	Hub, CDN *httptest.Server
	// Token is the token gated repositories accept.
	Token string
	// PageSize, when positive, pages the tree listing (Link: rel="next").
	PageSize int
	// Fault, when set, sees every data request (resolve or CDN GET) first and may answer
	// it itself, returning true.
	Fault func(fr *FaultRequest) bool

	mu    sync.Mutex
	repos map[string]*Repo

	dataRequests atomic.Int64
	// AuthOnHub and AuthOnCDN count requests that carried an Authorization header;
	// TokenOnCDN those whose header held the token.
	AuthOnHub, AuthOnCDN, TokenOnCDN atomic.Int64
	// Requests counts every request, Conns every connection accepted (Hub and CDN).
	Requests, Conns atomic.Int64
}

// Repo is a model repository.
type Repo struct {
	ID     string
	Commit string
	// Branches maps branch names to commits ("main" to Commit by default).
	Branches map[string]string
	// Gated repositories answer 401 without the server's token and 403 with another.
	Gated bool
	files map[string]*File
}

// File is one file of a repository.
type File struct {
	Path string
	Size int64
	// LFS files are served by a 302 to the CDN, with X-Linked-Etag and X-Linked-Size.
	LFS    bool
	SHA256 string
	OID    string
	// ETag is what responses carry; tests change it to simulate a replaced file.
	ETag atomic.Pointer[string]

	r    io.ReaderAt
	disk string // the file on disk, when it is one: served with sendfile
	// Served counts the body bytes served; cover counts, per byte, how often it was served.
	Served  atomic.Int64
	coverMu sync.Mutex
	cover   []uint16
}

// New starts a Hub and a CDN for the test; they stop when it ends.
func New(t testing.TB) *Server {
	s := &Server{repos: map[string]*Repo{}}
	count := func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.Conns.Add(1)
		}
	}
	s.Hub = httptest.NewUnstartedServer(http.HandlerFunc(s.serveHub))
	s.Hub.Config.ConnState = count
	s.Hub.Start()
	s.CDN = httptest.NewUnstartedServer(http.HandlerFunc(s.serveCDN))
	s.CDN.Config.ConnState = count
	s.CDN.Start()
	t.Cleanup(s.Close)
	return s
}

// Close stops both servers.
func (s *Server) Close() {
	s.Hub.CloseClientConnections()
	s.CDN.CloseClientConnections()
	s.Hub.Close()
	s.CDN.Close()
}

// Endpoint is the Hub's URL, for HF_ENDPOINT or remote.Options.Endpoint.
func (s *Server) Endpoint() string { return s.Hub.URL }

// cdnBase is the CDN's URL under the host name "localhost".
func (s *Server) cdnBase() string {
	u, _ := url.Parse(s.CDN.URL)
	return "http://localhost:" + u.Port()
}

// AddRepo adds a repository at a fixed commit derived from its id.
func (s *Server) AddRepo(id string) *Repo {
	h := sha1.Sum([]byte("commit of " + id))
	r := &Repo{ID: id, Commit: hex.EncodeToString(h[:]), files: map[string]*File{}}
	r.Branches = map[string]string{"main": r.Commit}
	s.mu.Lock()
	s.repos[id] = r
	s.mu.Unlock()
	return r
}

// AddBytes adds a file with the given contents; files of 1 KiB or more are LFS files.
func (r *Repo) AddBytes(path string, data []byte) *File {
	return r.add(path, bytesReaderAt(data), int64(len(data)))
}

// AddFile adds a file read from disk; the file must outlive the test.
func (r *Repo) AddFile(t testing.TB, path, disk string) *File {
	t.Helper()
	f, err := os.Open(disk)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	x := r.add(path, f, st.Size())
	x.disk = disk
	return x
}

// AddDir adds every regular file of a local directory, under prefix.
func (r *Repo) AddDir(t testing.TB, prefix, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.Type().IsRegular() {
			p := e.Name()
			if prefix != "" {
				p = prefix + "/" + p
			}
			r.AddFile(t, p, filepath.Join(dir, e.Name()))
		}
	}
}

// AddZeros adds an LFS file of size zero bytes without hashing it (its hashes are made up
// from its path): a large file that costs nothing until it is read.
func (r *Repo) AddZeros(path string, size int64) *File {
	f := &File{Path: path, Size: size, r: zeros{}, LFS: true}
	h1, h256 := sha1.Sum([]byte(path)), sha256.Sum256([]byte(path))
	f.OID, f.SHA256 = hex.EncodeToString(h1[:]), hex.EncodeToString(h256[:])
	tag := `"` + f.SHA256 + `"`
	f.ETag.Store(&tag)
	r.files[path] = f
	return f
}

type zeros struct{}

func (zeros) ReadAt(p []byte, off int64) (int, error) {
	clear(p)
	return len(p), nil
}

func (r *Repo) add(path string, ra io.ReaderAt, size int64) *File {
	f := &File{Path: path, Size: size, r: ra, LFS: size >= 1024}
	h1, h256 := sha1.New(), sha256.New()
	io.Copy(io.MultiWriter(h1, h256), io.NewSectionReader(ra, 0, size))
	f.OID = hex.EncodeToString(h1.Sum(nil))
	f.SHA256 = hex.EncodeToString(h256.Sum(nil))
	tag := `"` + f.OID + `"`
	if f.LFS {
		tag = `"` + f.SHA256 + `"`
	}
	f.ETag.Store(&tag)
	r.files[path] = f
	return f
}

// File returns a file of the repository.
func (r *Repo) File(path string) *File { return r.files[path] }

// Files returns the repository's files.
func (r *Repo) Files() []*File {
	var out []*File
	for _, f := range r.files {
		out = append(out, f)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

// TrackCoverage makes the file count, per byte, how often it was served.
func (f *File) TrackCoverage() {
	f.coverMu.Lock()
	f.cover = make([]uint16, f.Size)
	f.coverMu.Unlock()
}

// MaxCoverage returns the most times any byte was served, and the first such offset.
func (f *File) MaxCoverage() (int, int64) {
	f.coverMu.Lock()
	defer f.coverMu.Unlock()
	best, at := 0, int64(-1)
	for i, c := range f.cover {
		if int(c) > best {
			best, at = int(c), int64(i)
		}
	}
	return best, at
}

// Covered returns how many distinct bytes were served.
func (f *File) Covered() int64 {
	f.coverMu.Lock()
	defer f.coverMu.Unlock()
	var n int64
	for _, c := range f.cover {
		if c > 0 {
			n++
		}
	}
	return n
}

func (f *File) count(off int64, n int) {
	f.Served.Add(int64(n))
	f.coverMu.Lock()
	if f.cover != nil {
		for i := off; i < off+int64(n) && i < int64(len(f.cover)); i++ {
			f.cover[i]++
		}
	}
	f.coverMu.Unlock()
}

// Served returns the body bytes served for every file of every repository.
func (s *Server) Served() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int64
	for _, r := range s.repos {
		for _, f := range r.files {
			n += f.Served.Load()
		}
	}
	return n
}

// DataRequests returns the number of data requests so far.
func (s *Server) DataRequests() int64 { return s.dataRequests.Load() }

type bytesReaderAt []byte

func (b bytesReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(b)) {
		return 0, io.EOF
	}
	n := copy(p, b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// hubError answers like the Hub: a status, X-Error-Code and X-Error-Message.
func hubError(w http.ResponseWriter, code int, xcode, msg string) {
	if xcode != "" {
		w.Header().Set("X-Error-Code", xcode)
	}
	w.Header().Set("X-Error-Message", msg)
	http.Error(w, msg, code)
}

// access checks a request against a repository, answering the refusal itself.
func (s *Server) access(w http.ResponseWriter, req *http.Request, id string) (*Repo, bool) {
	s.mu.Lock()
	r := s.repos[id]
	s.mu.Unlock()
	auth := req.Header.Get("Authorization")
	if r == nil {
		if auth == "" {
			hubError(w, http.StatusUnauthorized, "RepoNotFound", "Repository not found")
		} else {
			hubError(w, http.StatusNotFound, "RepoNotFound", "Repository not found")
		}
		return nil, false
	}
	if r.Gated {
		switch {
		case auth == "":
			hubError(w, http.StatusUnauthorized, "GatedRepo", "Access to model "+id+" is restricted. You must have access to it and be authenticated to access it. Please log in.")
			return nil, false
		case auth != "Bearer "+s.Token:
			hubError(w, http.StatusForbidden, "GatedRepo", "Access to model "+id+" is restricted and you are not in the authorized list.")
			return nil, false
		}
	}
	return r, true
}

func (r *Repo) commitOf(rev string) (string, bool) {
	if c, ok := r.Branches[rev]; ok {
		return c, true
	}
	if rev == r.Commit {
		return rev, true
	}
	return "", false
}

func (s *Server) serveHub(w http.ResponseWriter, req *http.Request) {
	s.Requests.Add(1)
	if req.Header.Get("Authorization") != "" {
		s.AuthOnHub.Add(1)
	}
	parts := strings.Split(strings.TrimPrefix(req.URL.EscapedPath(), "/"), "/")
	unesc := func(p string) string {
		u, err := url.PathUnescape(p)
		if err != nil {
			return p
		}
		return u
	}
	// /api/models/ORG/NAME/revision/REV and /api/models/ORG/NAME/tree/REV[/PATH]
	if len(parts) >= 6 && parts[0] == "api" && parts[1] == "models" {
		r, ok := s.access(w, req, parts[2]+"/"+parts[3])
		if !ok {
			return
		}
		commit, ok := r.commitOf(unesc(parts[5]))
		if !ok {
			hubError(w, http.StatusNotFound, "RevisionNotFound", "Invalid rev id: "+unesc(parts[5]))
			return
		}
		switch parts[4] {
		case "revision":
			json.NewEncoder(w).Encode(map[string]any{"id": r.ID, "sha": commit})
			return
		case "tree":
			s.serveTree(w, req, r)
			return
		}
		http.NotFound(w, req)
		return
	}
	// /ORG/NAME/resolve/REV/PATH...
	if len(parts) >= 5 && parts[2] == "resolve" {
		r, ok := s.access(w, req, parts[0]+"/"+parts[1])
		if !ok {
			return
		}
		commit, ok := r.commitOf(unesc(parts[3]))
		if !ok {
			hubError(w, http.StatusNotFound, "RevisionNotFound", "Invalid rev id: "+unesc(parts[3]))
			return
		}
		var p []string
		for _, x := range parts[4:] {
			p = append(p, unesc(x))
		}
		f := r.files[strings.Join(p, "/")]
		if f == nil {
			hubError(w, http.StatusNotFound, "EntryNotFound", "Entry not found")
			return
		}
		w.Header().Set("X-Repo-Commit", commit)
		if f.LFS {
			w.Header().Set("X-Linked-Etag", `"`+f.SHA256+`"`)
			w.Header().Set("X-Linked-Size", strconv.FormatInt(f.Size, 10))
			w.Header().Set("ETag", `"`+f.OID+`"`)
			http.Redirect(w, req, s.cdnBase()+"/"+f.SHA256+"?X-Signature=secret-signature", http.StatusFound)
			return
		}
		s.serveData(w, req, f)
		return
	}
	http.NotFound(w, req)
}

func (s *Server) serveTree(w http.ResponseWriter, req *http.Request, r *Repo) {
	type lfs struct {
		OID         string `json:"oid"`
		Size        int64  `json:"size"`
		PointerSize int    `json:"pointerSize"`
	}
	type ent struct {
		Type string `json:"type"`
		OID  string `json:"oid"`
		Size int64  `json:"size"`
		Path string `json:"path"`
		LFS  *lfs   `json:"lfs,omitempty"`
	}
	var ents []ent
	dirs := map[string]bool{}
	for _, f := range r.Files() {
		e := ent{Type: "file", OID: f.OID, Size: f.Size, Path: f.Path}
		if f.LFS {
			e.LFS = &lfs{OID: f.SHA256, Size: f.Size, PointerSize: 134}
		}
		ents = append(ents, e)
		for d := filepath.Dir(f.Path); d != "." && !dirs[d]; d = filepath.Dir(d) {
			dirs[d] = true
			ents = append(ents, ent{Type: "directory", OID: "0000000000000000000000000000000000000000", Path: d})
		}
	}
	sort.Slice(ents, func(i, j int) bool { return ents[i].Path < ents[j].Path })
	start, _ := strconv.Atoi(req.URL.Query().Get("cursor"))
	end := len(ents)
	if s.PageSize > 0 && start+s.PageSize < end {
		end = start + s.PageSize
		q := req.URL.Query()
		q.Set("cursor", strconv.Itoa(end))
		next := *req.URL
		next.RawQuery = q.Encode()
		w.Header().Set("Link", `<`+s.Hub.URL+next.RequestURI()+`>; rel="next"`)
	}
	if start > len(ents) {
		start = len(ents)
	}
	json.NewEncoder(w).Encode(ents[start:end])
}

func (s *Server) serveCDN(w http.ResponseWriter, req *http.Request) {
	s.Requests.Add(1)
	if a := req.Header.Get("Authorization"); a != "" {
		s.AuthOnCDN.Add(1)
		if s.Token != "" && strings.Contains(a, s.Token) {
			s.TokenOnCDN.Add(1)
		}
	}
	sha := strings.TrimPrefix(req.URL.Path, "/")
	if req.URL.Query().Get("X-Signature") != "secret-signature" {
		http.Error(w, "bad signature", http.StatusForbidden)
		return
	}
	s.mu.Lock()
	var f *File
	for _, r := range s.repos {
		for _, x := range r.files {
			if x.SHA256 == sha {
				f = x
			}
		}
	}
	s.mu.Unlock()
	if f == nil {
		http.NotFound(w, req)
		return
	}
	s.serveData(w, req, f)
}

// FaultRequest is a data request offered to Server.Fault.
type FaultRequest struct {
	W   http.ResponseWriter
	R   *http.Request
	F   *File
	N   int64 // 1 for the first data request of the server, 2 for the next...
	Off int64 // first byte asked for
	End int64 // one past the last byte asked for
	// Ranged reports whether the request asked for a range.
	Ranged bool
}

// parseRange parses a single "bytes=A-B" range.
func parseRange(h string, size int64) (int64, int64, bool) {
	v, ok := strings.CutPrefix(h, "bytes=")
	if !ok || strings.Contains(v, ",") {
		return 0, size, false
	}
	a, b, _ := strings.Cut(v, "-")
	off, err1 := strconv.ParseInt(a, 10, 64)
	last, err2 := strconv.ParseInt(b, 10, 64)
	if err1 != nil || err2 != nil || off > last || off >= size {
		return 0, size, false
	}
	return off, min(last+1, size), true
}

func (s *Server) serveData(w http.ResponseWriter, req *http.Request, f *File) {
	n := s.dataRequests.Add(1)
	off, end, ranged := parseRange(req.Header.Get("Range"), f.Size)
	if s.Fault != nil && s.Fault(&FaultRequest{W: w, R: req, F: f, N: n, Off: off, End: end, Ranged: ranged}) {
		return
	}
	w.Header().Set("ETag", *f.ETag.Load())
	w.Header().Set("Accept-Ranges", "bytes")
	w.Header().Set("Content-Type", "application/octet-stream") // no sniffing: it would read
	if f.disk != "" {
		// A file of its own per request, so that the kernel copies it (sendfile); the
		// bytes are counted as they leave.
		osf, err := os.Open(f.disk)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		defer osf.Close()
		cw := &countingWriter{ResponseWriter: w}
		http.ServeContent(cw, req, "", time.Time{}, osf)
		if cw.code == http.StatusPartialContent || cw.code == http.StatusOK {
			f.count(off, int(cw.n))
		}
		return
	}
	http.ServeContent(w, req, "", time.Time{}, &countingSeeker{f: f, size: f.Size})
}

// countingWriter counts the body bytes written, keeping the ResponseWriter's ReadFrom
// (sendfile).
type countingWriter struct {
	http.ResponseWriter
	code int
	n    int64
}

func (c *countingWriter) WriteHeader(code int) {
	c.code = code
	c.ResponseWriter.WriteHeader(code)
}

func (c *countingWriter) Write(p []byte) (int, error) {
	if c.code == 0 {
		c.code = http.StatusOK
	}
	n, err := c.ResponseWriter.Write(p)
	c.n += int64(n)
	return n, err
}

func (c *countingWriter) ReadFrom(r io.Reader) (int64, error) {
	if c.code == 0 {
		c.code = http.StatusOK
	}
	n, err := c.ResponseWriter.(io.ReaderFrom).ReadFrom(r)
	c.n += n
	return n, err
}

func (c *countingWriter) Flush() {
	if f, ok := c.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// countingSeeker reads a File for http.ServeContent, counting what it reads.
type countingSeeker struct {
	f         *File
	size, pos int64
}

func (c *countingSeeker) Read(p []byte) (int, error) {
	if c.pos >= c.size {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), c.size-c.pos)]
	n, err := c.f.r.ReadAt(p, c.pos)
	c.f.count(c.pos, n)
	c.pos += int64(n)
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, err
}

func (c *countingSeeker) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
		c.pos = off
	case io.SeekCurrent:
		c.pos += off
	case io.SeekEnd:
		c.pos = c.size + off
	}
	return c.pos, nil
}

// Partial answers a range request with correct headers but only the first half of the
// body, then breaks the connection (abort) or ends the handler (truncated body).
func (fr *FaultRequest) Partial(abort bool) {
	w := fr.W
	n := fr.End - fr.Off
	w.Header().Set("ETag", *fr.F.ETag.Load())
	w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", fr.Off, fr.End-1, fr.F.Size))
	w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
	w.WriteHeader(http.StatusPartialContent)
	half := n / 2
	buf := make([]byte, half)
	k, _ := fr.F.r.ReadAt(buf, fr.Off)
	w.Write(buf[:k])
	fr.F.count(fr.Off, k)
	if fl, ok := w.(http.Flusher); ok {
		fl.Flush()
	}
	if abort {
		panic(http.ErrAbortHandler)
	}
}

// Status answers with a status code and optional Retry-After seconds.
func (fr *FaultRequest) Status(code int, retryAfter string) {
	if retryAfter != "" {
		fr.W.Header().Set("Retry-After", retryAfter)
	}
	http.Error(fr.W, http.StatusText(code), code)
}

// Trickle answers with correct headers and then a few bytes at a time, slowly, until the
// client goes away or limit passes.
func (fr *FaultRequest) Trickle(every time.Duration, limit time.Duration) {
	w := fr.W
	n := fr.End - fr.Off
	w.Header().Set("ETag", *fr.F.ETag.Load())
	w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", fr.Off, fr.End-1, fr.F.Size))
	w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
	w.WriteHeader(http.StatusPartialContent)
	fl, _ := w.(http.Flusher)
	deadline := time.Now().Add(limit)
	pos := fr.Off
	var b [8]byte
	for pos < fr.End && time.Now().Before(deadline) {
		k, _ := fr.F.r.ReadAt(b[:min(int64(len(b)), fr.End-pos)], pos)
		if _, err := w.Write(b[:k]); err != nil {
			return
		}
		fr.F.count(pos, k)
		pos += int64(k)
		if fl != nil {
			fl.Flush()
		}
		select {
		case <-fr.R.Context().Done():
			return
		case <-time.After(every):
		}
	}
	panic(http.ErrAbortHandler)
}

// Shifted answers 206 with the range one byte later than asked (a wrong Content-Range) or,
// with short, the range asked for cut to half (a short Content-Range).
func (fr *FaultRequest) Shifted(short bool) {
	a, b := fr.Off+1, min(fr.End, fr.F.Size-1)
	if short {
		a, b = fr.Off, fr.Off+max(1, (fr.End-fr.Off)/2)
	}
	buf := make([]byte, b-a)
	k, _ := fr.F.r.ReadAt(buf, a)
	fr.W.Header().Set("ETag", *fr.F.ETag.Load())
	fr.W.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", a, b-1, fr.F.Size))
	fr.W.Header().Set("Content-Length", strconv.Itoa(k))
	fr.W.WriteHeader(http.StatusPartialContent)
	fr.W.Write(buf[:k])
	fr.F.count(a, k)
}
