package remote

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/weft-ml/weft"

	"github.com/weft-ml/weft/internal/ferr"
)

// Client reads remote checkpoints: it resolves hf:// names through the Hub's API and reads
// files with HTTP range requests over one connection pool, with retries, stall detection
// and a bound on the memory its files hold. A Client is safe for concurrent use; one per
// process (or per command) lets every input share connections and the memory bound.
type Client struct {
	o        Options
	endpoint *url.URL
	hc       *http.Client
	sem      chan struct{}

	held     atomic.Int64 // bytes of file extents alive (fetched, in flight or kept)
	peakHeld atomic.Int64

	requests, retries, received atomic.Int64
}

// Stats counts a client's traffic.
type Stats struct {
	// Requests is the number of HTTP requests sent, Retries how many of them repeated an
	// earlier one, Received the body bytes received.
	Requests, Retries, Received int64
	// PeakHeld is the most bytes the client's files held in memory at once.
	PeakHeld int64
}

// NewClient returns a client with the given options (see FromEnv for the environment's).
func NewClient(o Options) *Client {
	o = o.withDefaults()
	ep, err := url.Parse(o.Endpoint)
	if err != nil || ep.Host == "" {
		ep = &url.URL{Scheme: "https", Host: "invalid.endpoint"}
	}
	base := o.Transport
	if base == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = o.Parallel + 4
		t.MaxIdleConns = 4 * (o.Parallel + 4)
		t.DisableCompression = true
		t.ResponseHeaderTimeout = o.HeaderTimeout
		base = t
	}
	c := &Client{o: o, endpoint: ep, sem: make(chan struct{}, o.Parallel)}
	c.hc = &http.Client{Transport: &authTransport{base: base, c: c}}
	return c
}

// Stats returns the client's traffic so far.
func (c *Client) Stats() Stats {
	return Stats{Requests: c.requests.Load(), Retries: c.retries.Load(), Received: c.received.Load(), PeakHeld: c.peakHeld.Load()}
}

// hold counts n more bytes held (n < 0: released).
func (c *Client) hold(n int64) {
	h := c.held.Add(n)
	for {
		p := c.peakHeld.Load()
		if h <= p || c.peakHeld.CompareAndSwap(p, h) {
			return
		}
	}
}

// Endpoint returns the Hub endpoint the client talks to.
func (c *Client) Endpoint() string { return c.o.Endpoint }

// sameHost reports whether u is on the endpoint's scheme and host (port included): the only
// place the token goes.
func (c *Client) sameHost(u *url.URL) bool {
	return u != nil && strings.EqualFold(u.Scheme, c.endpoint.Scheme) && strings.EqualFold(u.Host, c.endpoint.Host)
}

// authTransport adds the token to requests for the endpoint's host, and only those: a
// redirect to another host (the Hub sends large files to a CDN) never carries it, whatever
// the redirect policy.
type authTransport struct {
	base http.RoundTripper
	c    *Client
}

func (t *authTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	t.c.requests.Add(1)
	if t.c.o.Token != "" && t.c.sameHost(req.URL) {
		r := req.Clone(req.Context())
		r.Header.Set("Authorization", "Bearer "+t.c.o.Token)
		return t.base.RoundTrip(r)
	}
	return t.base.RoundTrip(req)
}

// newRequest makes a GET request with weft's headers.
func newRequest(ctx context.Context, u string) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("User-Agent", "weft/"+weft.Version)
	// Ranges are of the stored bytes: never let a server encode the body.
	req.Header.Set("Accept-Encoding", "identity")
	return req, nil
}

// acquire takes one of the Parallel request slots.
func (c *Client) acquire(ctx context.Context) error {
	select {
	case c.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

func (c *Client) release() { <-c.sem }

// isRetryable reports whether err is worth another attempt: server errors and rate limits
// marked retryable, stalls, timeouts and broken connections; not refusals, missing files,
// changed files or protocol violations, nor the caller's cancellation.
func isRetryable(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	var r *retryable
	if errors.As(err, &r) {
		return true
	}
	switch {
	case errors.Is(err, ErrAuth), errors.Is(err, ErrNotFound), errors.Is(err, ErrChanged), errors.Is(err, ErrProtocol):
		return false
	case errors.Is(err, context.Canceled):
		return false
	}
	// A host name that does not exist will not exist in a minute either.
	var dns *net.DNSError
	if errors.As(err, &dns) && dns.IsNotFound {
		return false
	}
	// Transport errors: resets, refused or dropped connections, timeouts, short bodies.
	return true
}

// backoff returns the wait before attempt n (1-based): exponential, with full jitter.
func (c *Client) backoff(n int) time.Duration {
	d := c.o.BackoffBase << min(n-1, 20)
	if d <= 0 || d > c.o.BackoffMax {
		d = c.o.BackoffMax
	}
	return d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
}

// retry runs attempt until it succeeds, fails with an error that is not retryable, or has
// failed MaxRetries times in a row without progress. attempt reports whether it made
// progress (received bytes), which resets the count. what describes the request in errors
// ("" for none) and, after who, in the lines logged for retries.
func (c *Client) retry(ctx context.Context, who, what string, attempt func() (progress bool, err error)) error {
	pre := ""
	if what != "" {
		pre = what + ": "
	}
	fails := 0
	for {
		progress, err := attempt()
		if err == nil {
			return nil
		}
		if !isRetryable(ctx, err) {
			if ctx.Err() != nil {
				return fmt.Errorf("%s%w", pre, context.Cause(ctx))
			}
			if pre != "" {
				return fmt.Errorf("%s%w", pre, err)
			}
			return err
		}
		if progress {
			fails = 0
		}
		fails++
		if fails > c.o.MaxRetries {
			return fmt.Errorf("%sgiving up after %d attempts without progress: %w", pre, fails, err)
		}
		wait := c.backoff(fails)
		var r *retryable
		if errors.As(err, &r) && r.after > 0 {
			if r.after > c.o.MaxRetryAfter {
				return fmt.Errorf("%sthe server asks to retry after %v, longer than the %v weft waits: %w", pre, r.after.Round(time.Second), c.o.MaxRetryAfter, err)
			}
			wait = max(wait, r.after)
		}
		c.retries.Add(1)
		if c.o.Logf != nil {
			msg := pre + err.Error()
			if who != "" && !strings.HasPrefix(msg, who) {
				msg = who + ": " + msg
			}
			c.o.Logf("%s; retrying in %v", msg, wait.Round(time.Millisecond))
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%s%w", pre, context.Cause(ctx))
		}
	}
}

// transportError rewrites an error of http.Client.Do without its URL, which may carry a
// signature (CDN URLs are signed in their query).
func transportError(display string, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	if display == "" {
		return err
	}
	return fmt.Errorf("%s: %w", display, err)
}

// maxAPIBody bounds one API response read into memory.
const maxAPIBody = 64 << 20

// getJSON fetches an API URL and decodes its JSON body into v, retrying transient failures.
// It returns the response headers.
func (c *Client) getJSON(ctx context.Context, u string, t target, v any) (http.Header, error) {
	var hdr http.Header
	err := c.retry(ctx, t.display, "", func() (bool, error) {
		if err := c.acquire(ctx); err != nil {
			return false, err
		}
		defer c.release()
		rctx, cancel := context.WithTimeout(ctx, c.o.RequestTimeout)
		defer cancel()
		req, err := newRequest(rctx, u)
		if err != nil {
			return false, err
		}
		req.Header.Set("Accept", "application/json")
		resp, err := c.hc.Do(req)
		if err != nil {
			return false, transportError(t.display, err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			return false, c.statusError(resp, t)
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, maxAPIBody+1))
		c.received.Add(int64(len(body)))
		if err != nil {
			return len(body) > 0, transportError(t.display, err)
		}
		if len(body) > maxAPIBody {
			return false, ferr.New(ErrProtocol, "%s: unexpected response: API response larger than %d bytes", t.display, maxAPIBody)
		}
		if err := json.Unmarshal(body, v); err != nil {
			return false, ferr.New(ErrProtocol, "%s: unexpected response: API response is not the JSON expected: %v", t.display, err)
		}
		hdr = resp.Header
		return true, nil
	})
	return hdr, err
}
