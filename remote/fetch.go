package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// minProgress is the least an attempt must bring to count as progress.
const minProgress = 64 << 10

var (
	errDeadline = errors.New("request deadline exceeded")
	errStall    = errors.New("stalled")
)

// fetch fills dst with the bytes [off, off+len(dst)) of f, retrying transient failures and
// resuming a broken transfer where it stopped.
func (f *file) fetch(ctx context.Context, dst []byte, off int64) error {
	got := 0
	what := fmt.Sprintf("bytes %d-%d", off, off+int64(len(dst)))
	return f.c.retry(ctx, f.display, what, func() (bool, error) {
		rest := len(dst) - got
		n, err := f.request(ctx, dst[got:], off+int64(got))
		got += n
		if err == nil && got < len(dst) {
			err = io.ErrUnexpectedEOF
		}
		// Progress resets the count of failed attempts, but a trickle that stalls, or a
		// connection that breaks after a few bytes each time, must not keep weft waiting
		// forever: it counts only when it brought a good part of what was asked.
		progress := n >= min(rest, minProgress) && !errors.Is(err, ErrStalled)
		return progress, err
	})
}

// request sends one range request for dst and reads what arrives into it, returning the
// number of bytes received (a prefix of dst, usable even when err is not nil).
func (f *file) request(ctx context.Context, dst []byte, off int64) (int, error) {
	c := f.c
	if err := c.acquire(ctx); err != nil {
		return 0, err
	}
	defer c.release()
	rctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	rctx, cancelT := context.WithTimeoutCause(rctx, c.o.RequestTimeout, errDeadline)
	defer cancelT()

	u, cached := f.location()
	req, err := newRequest(rctx, u)
	if err != nil {
		return 0, err
	}
	last := off + int64(len(dst)) - 1
	req.Header.Set("Range", "bytes="+strconv.FormatInt(off, 10)+"-"+strconv.FormatInt(last, 10))
	resp, err := c.hc.Do(req)
	if err != nil {
		if errors.Is(context.Cause(rctx), errDeadline) {
			err = fmt.Errorf("no response within %v: %w", c.o.RequestTimeout, err)
		}
		return 0, transportError("", err)
	}
	defer resp.Body.Close()

	whole := false
	switch resp.StatusCode {
	case http.StatusPartialContent:
		if err := f.checkRange(resp, off, last); err != nil {
			return 0, err
		}
	case http.StatusOK:
		// A server that ignores Range sends the whole file: usable from offset 0 only.
		if off != 0 || resp.ContentLength < 0 || resp.ContentLength != f.size {
			return 0, fmt.Errorf("%w: the server ignored the range request (HTTP 200 for bytes %d-%d): it cannot serve parts of the file", ErrProtocol, off, last)
		}
		whole = true
	default:
		err := c.statusError(resp, f.t)
		if cached && (errors.Is(err, ErrAuth) || errors.Is(err, ErrNotFound)) {
			// The download URL the Hub redirected to is signed and expires: ask the Hub
			// again.
			f.forgetLocation()
			return 0, &retryable{err: fmt.Errorf("the download URL the Hub gave has expired or is refused, asking again: %v", err)}
		}
		return 0, err
	}
	if err := f.checkIdentity(resp); err != nil {
		return 0, err
	}
	if ce := resp.Header.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		return 0, fmt.Errorf("%w: the server encoded the body (Content-Encoding %q) though asked not to", ErrProtocol, ce)
	}
	if fin := resp.Request.URL; !cached && fin.String() != u {
		f.setLocation(fin.String())
	}

	var count atomic.Int64
	stop := c.watch(cancel, &count)
	n, err := io.ReadFull(countingReader{resp.Body, &count}, dst)
	stop()
	c.received.Add(int64(n))
	if err != nil {
		switch cause := context.Cause(rctx); {
		case errors.Is(cause, errStall):
			err = fmt.Errorf("%w: less than %d bytes/s for %v", ErrStalled, c.o.StallRate, c.o.StallWindow)
		case errors.Is(cause, errDeadline):
			err = fmt.Errorf("transfer not complete within %v: %w", c.o.RequestTimeout, err)
		}
		return n, &retryable{err: fmt.Errorf("bytes %d-%d: received %d of %d: %w", off, last+1, n, len(dst), err)}
	}
	if !whole {
		// The body must end where the range does.
		var one [1]byte
		if k, _ := resp.Body.Read(one[:]); k > 0 {
			return n, fmt.Errorf("%w: the body of bytes %d-%d is longer than the range", ErrProtocol, off, last)
		}
	}
	return n, nil
}

// checkRange checks a 206 response against the range asked for: the same first and last
// byte, and the file's size.
func (f *file) checkRange(resp *http.Response, off, last int64) error {
	cr := resp.Header.Get("Content-Range")
	a, b, total, ok := parseContentRange(cr)
	if !ok {
		return fmt.Errorf("%w: HTTP 206 without a valid Content-Range (%q)", ErrProtocol, cleanHeader(cr))
	}
	if a != off || b != last {
		return fmt.Errorf("%w: asked for bytes %d-%d, the server sent %d-%d (Content-Range %q)", ErrProtocol, off, last, a, b, cleanHeader(cr))
	}
	if total >= 0 && total != f.size {
		return fmt.Errorf("%w: the file is now %d bytes, it was %d", ErrChanged, total, f.size)
	}
	if resp.ContentLength >= 0 && resp.ContentLength != b-a+1 {
		return fmt.Errorf("%w: Content-Length %d disagrees with Content-Range %q", ErrProtocol, resp.ContentLength, cleanHeader(cr))
	}
	return nil
}

// parseContentRange parses "bytes A-B/TOTAL" (TOTAL may be "*", returned as -1).
func parseContentRange(s string) (a, b, total int64, ok bool) {
	s = strings.TrimSpace(s)
	rest, found := strings.CutPrefix(s, "bytes ")
	if !found {
		return 0, 0, 0, false
	}
	rng, tot, found := strings.Cut(rest, "/")
	if !found {
		return 0, 0, 0, false
	}
	as, bs, found := strings.Cut(rng, "-")
	if !found {
		return 0, 0, 0, false
	}
	var err error
	if a, err = strconv.ParseInt(as, 10, 64); err != nil || a < 0 {
		return 0, 0, 0, false
	}
	if b, err = strconv.ParseInt(bs, 10, 64); err != nil || b < a {
		return 0, 0, 0, false
	}
	if tot == "*" {
		return a, b, -1, true
	}
	if total, err = strconv.ParseInt(tot, 10, 64); err != nil || total <= b {
		return 0, 0, 0, false
	}
	return a, b, total, true
}

// checkIdentity pins the file's version: the first ETag (or Last-Modified) each host sends
// for it is remembered, and any other value later is ErrChanged. For Hub files, the
// redirect's X-Linked-Etag, X-Linked-Size and X-Repo-Commit must also match the listing.
func (f *file) checkIdentity(resp *http.Response) error {
	for r := resp; r != nil; {
		if err := f.checkHubHeaders(r.Header); err != nil {
			return err
		}
		if r.Request == nil {
			break
		}
		r = r.Request.Response
	}
	tag := resp.Header.Get("ETag")
	if tag == "" {
		if lm := resp.Header.Get("Last-Modified"); lm != "" {
			tag = "Last-Modified " + lm
		}
	}
	if tag == "" {
		return nil
	}
	host := strings.ToLower(resp.Request.URL.Host)
	f.pinMu.Lock()
	prev, seen := f.pins[host]
	if !seen {
		f.pins[host] = tag
	}
	f.pinMu.Unlock()
	if seen && prev != tag {
		return fmt.Errorf("%w: ETag %s, earlier %s: the file was replaced while weft read it; nothing was mixed, run again", ErrChanged, cleanHeader(tag), cleanHeader(prev))
	}
	return nil
}

// checkHubHeaders compares the Hub's headers about a file with what the listing said.
func (f *file) checkHubHeaders(h http.Header) error {
	if f.commit != "" {
		if rc := h.Get("X-Repo-Commit"); rc != "" && rc != f.commit {
			return fmt.Errorf("%w: served from commit %s, not %s", ErrChanged, cleanHeader(rc), f.commit)
		}
	}
	if f.sha256 != "" {
		if le := normalizeETag(h.Get("X-Linked-Etag")); le != "" && le != f.sha256 {
			return fmt.Errorf("%w: content sha256 %s, the listing says %s", ErrChanged, cleanHeader(le), f.sha256)
		}
	}
	if ls := h.Get("X-Linked-Size"); ls != "" {
		if n, err := strconv.ParseInt(ls, 10, 64); err == nil && n != f.size {
			return fmt.Errorf("%w: %d bytes, the listing says %d", ErrChanged, n, f.size)
		}
	}
	return nil
}

// normalizeETag strips the weak prefix and the quotes of an ETag.
func normalizeETag(s string) string {
	s = strings.TrimPrefix(strings.TrimSpace(s), "W/")
	return strings.Trim(s, `"`)
}

// watch cancels a request whose body delivers fewer than StallRate bytes per second over
// a StallWindow. stop ends the watch.
func (c *Client) watch(cancel context.CancelCauseFunc, count *atomic.Int64) (stop func()) {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(c.o.StallWindow)
		defer t.Stop()
		floor := int64(float64(c.o.StallRate) * c.o.StallWindow.Seconds())
		var last int64
		for {
			select {
			case <-done:
				return
			case <-t.C:
				cur := count.Load()
				if cur-last < floor {
					cancel(errStall)
					return
				}
				last = cur
			}
		}
	}()
	return func() { close(done) }
}

type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}
