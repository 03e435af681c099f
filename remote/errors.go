package remote

import (
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/weft-ml/weft/internal/ferr"
)

// Sentinel errors, for errors.Is.
var (
	// ErrAuth is an access refusal (HTTP 401 or 403): a gated or private repository without
	// a token that grants access.
	ErrAuth = errors.New("remote: access denied")
	// ErrNotFound is a missing repository, revision or file (HTTP 404). Errors that wrap it
	// also match fs.ErrNotExist.
	ErrNotFound = errors.New("remote: not found")
	// ErrChanged reports a remote file that changed during the run (another ETag or size):
	// reading on would mix two versions.
	ErrChanged = errors.New("remote: file changed during the run")
	// ErrProtocol is a response that breaks the rules of range requests: a wrong or short
	// Content-Range, a Range ignored, an encoded body.
	ErrProtocol = errors.New("remote: unexpected response")
	// ErrStalled is a response body that delivered less than the stall rate for the stall
	// window; the request is retried from where it stopped.
	ErrStalled = errors.New("remote: transfer stalled")
)

// notFound wraps ErrNotFound so that errors.Is also matches fs.ErrNotExist, which the format
// readers test for optional files.
type notFound struct{ msg string }

func (e *notFound) Error() string { return e.msg }

func (e *notFound) Is(target error) bool { return target == ErrNotFound || target == fs.ErrNotExist }

// retryable marks an error worth another attempt, with the wait the server asked for.
type retryable struct {
	err   error
	after time.Duration
}

func (e *retryable) Error() string { return e.err.Error() }
func (e *retryable) Unwrap() error { return e.err }

// target describes what a request was for, in messages.
type target struct {
	// display names the thing asked for: an hf:// name or a redacted URL.
	display string
	// repo and rev are set for Hub requests; file for a file in the repository.
	repo, rev, file string
	hub             bool
}

// statusError turns a response status that is not a success into an error: retryable for
// 408, 429 and 5xx (with the Retry-After the server gave), ErrAuth for 401 and 403,
// ErrNotFound for 404 and 410, ErrProtocol otherwise.
func (c *Client) statusError(resp *http.Response, t target) error {
	code := resp.StatusCode
	pre := ""
	if t.display != "" {
		pre = t.display + ": "
	}
	switch code {
	case http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusInternalServerError,
		http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return &retryable{err: fmt.Errorf("%sHTTP %d %s", pre, code, http.StatusText(code)), after: retryAfter(resp.Header)}
	}
	hubMsg := cleanHeader(resp.Header.Get("X-Error-Message"))
	xcode := resp.Header.Get("X-Error-Code")
	extra := ""
	if hubMsg != "" {
		extra = " (the server says: " + hubMsg + ")"
	}
	fromHub := t.hub && c.sameHost(resp.Request.URL)
	switch {
	case code == http.StatusUnauthorized || code == http.StatusForbidden || xcode == "GatedRepo":
		if !t.hub {
			return ferr.New(ErrAuth, "%saccess denied: HTTP %d %s%s; no token is sent to hosts other than the Hub endpoint", pre, code, http.StatusText(code), extra)
		}
		page := c.o.Endpoint + "/" + t.repo
		if !fromHub {
			return ferr.New(ErrAuth, "%saccess denied: the download host refused the request (HTTP %d)%s", pre, code, extra)
		}
		if c.o.Token == "" {
			return ferr.New(ErrAuth, "%saccess denied: HTTP %d: repository %s is gated or private (or does not exist), and no access token was given. If it is gated, accept its terms at %s while logged in; then give a token with read access: set HF_TOKEN, or log in with `hf auth login` (which writes %s)%s",
				pre, code, t.repo, page, TokenPath(), extra)
		}
		return ferr.New(ErrAuth, "%saccess denied: HTTP %d: the token given has no access to repository %s, which is gated or private. If it is gated, accept its terms at %s with the account the token belongs to (and give a fine-grained token read access to public gated repositories); if the token expired, make a new one%s",
			pre, code, t.repo, page, extra)
	case code == http.StatusNotFound || code == http.StatusGone:
		switch {
		case !t.hub:
			return &notFound{fmt.Sprintf("%snot found (HTTP %d)%s", pre, code, extra)}
		case xcode == "RevisionNotFound":
			return &notFound{fmt.Sprintf("%srevision %q not found in repository %s%s", pre, t.rev, t.repo, extra)}
		case xcode == "EntryNotFound" && t.file != "":
			return &notFound{fmt.Sprintf("%sfile %q not found in repository %s at revision %s%s", pre, t.file, t.repo, revName(t.rev), extra)}
		case xcode == "RepoNotFound" || t.file == "":
			return &notFound{fmt.Sprintf("%srepository %s not found at %s (a private repository also answers this way without a token that grants access)%s", pre, t.repo, c.o.Endpoint, extra)}
		}
		return &notFound{fmt.Sprintf("%sfile %q not found in repository %s at revision %s (HTTP %d)%s", pre, t.file, t.repo, revName(t.rev), code, extra)}
	case code == http.StatusRequestedRangeNotSatisfiable:
		return ferr.New(ErrChanged, "%sfile changed during the run: the server says the range is outside the file (HTTP 416): it is shorter than it was", pre)
	}
	return ferr.New(ErrProtocol, "%sunexpected response: HTTP %d %s%s", pre, code, http.StatusText(code), extra)
}

func revName(rev string) string {
	if rev == "" {
		return "main"
	}
	return rev
}

// retryAfter parses a Retry-After header: seconds, or an HTTP date. It returns 0 when there
// is none.
func retryAfter(h http.Header) time.Duration {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseInt(v, 10, 64); err == nil {
		if s < 0 {
			return 0
		}
		if s > 1<<30 {
			s = 1 << 30
		}
		return time.Duration(s) * retryAfterUnit
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := time.Until(t); d > 0 {
			return d
		}
	}
	return 0
}

// retryAfterUnit is one second; the package's tests shorten it.
var retryAfterUnit = time.Second

// cleanHeader keeps a server message printable and short.
func cleanHeader(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, strings.TrimSpace(s))
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}
