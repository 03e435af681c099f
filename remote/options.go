package remote

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// DefaultEndpoint is the Hugging Face Hub.
const DefaultEndpoint = "https://huggingface.co"

// Options configure a Client. The zero value of every field means its default.
type Options struct {
	// Endpoint is the Hub's base URL (default DefaultEndpoint; FromEnv reads HF_ENDPOINT).
	Endpoint string
	// Token is a Hugging Face access token. It is sent only to the endpoint's host (never to
	// another host, such as the CDN the Hub redirects downloads to), and never shown or
	// recorded.
	Token string

	// Transport carries the requests (default: a clone of http.DefaultTransport with enough
	// idle connections per host for Parallel requests, and no transparent compression).
	Transport http.RoundTripper

	// Parallel bounds the requests in flight at once (default 16).
	Parallel int
	// RangeSize bounds the bytes of one data request (default 4 MiB).
	RangeSize int64
	// ReadAhead bounds how far ahead of a sequential reader data is fetched (default 32 MiB
	// per sequential stream).
	ReadAhead int64
	// CacheBytes bounds the bytes held in memory by the client's files: fetched and not yet
	// read, in flight, or kept (headers). Read-ahead stops at this bound (default 96 MiB).
	CacheBytes int64
	// BlockSize is the first fetch at the start of a file, where headers are read in small
	// pieces; it doubles while a header is read on, up to 4 MiB (default 64 KiB).
	BlockSize int64
	// KeepBytes bounds, per file, the small pieces (headers, fingerprints) kept after they
	// were read, since readers come back to them (default 16 MiB).
	KeepBytes int64

	// MaxRetries is the number of attempts after which a request that makes no progress
	// fails (default 8). A request that receives data starts counting again.
	MaxRetries int
	// BackoffBase and BackoffMax shape the exponential backoff with full jitter between
	// attempts (defaults 500 ms and 30 s).
	BackoffBase, BackoffMax time.Duration
	// MaxRetryAfter is the longest Retry-After a 429 or 503 response is honoured with; a
	// longer one fails the request (default 10 min).
	MaxRetryAfter time.Duration
	// HeaderTimeout bounds the wait for a response's headers (default 60 s).
	HeaderTimeout time.Duration
	// RequestTimeout is the deadline of one request, body included (default 10 min).
	RequestTimeout time.Duration
	// StallWindow and StallRate detect stalls: a response body that delivers fewer than
	// StallRate bytes per second over StallWindow is abandoned and the range resumed
	// (defaults 30 s and 8 KiB/s).
	StallWindow time.Duration
	StallRate   int64

	// Logf, when set, receives one line for each retried request (never the token).
	Logf func(format string, args ...any)
	// Context, when set, ends every request of the client when it is done (an interrupted
	// command); reads then fail.
	Context context.Context
}

func (o Options) withDefaults() Options {
	def := func(v *int64, d int64) {
		if *v <= 0 {
			*v = d
		}
	}
	defd := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	if o.Endpoint == "" {
		o.Endpoint = DefaultEndpoint
	}
	o.Endpoint = strings.TrimRight(o.Endpoint, "/")
	if o.Parallel <= 0 {
		o.Parallel = 16
	}
	def(&o.RangeSize, 4<<20)
	def(&o.ReadAhead, 32<<20)
	def(&o.CacheBytes, 96<<20)
	def(&o.BlockSize, 64<<10)
	def(&o.KeepBytes, 16<<20)
	def(&o.StallRate, 8<<10)
	if o.MaxRetries <= 0 {
		o.MaxRetries = 8
	}
	defd(&o.BackoffBase, 500*time.Millisecond)
	defd(&o.BackoffMax, 30*time.Second)
	defd(&o.MaxRetryAfter, 10*time.Minute)
	defd(&o.HeaderTimeout, 60*time.Second)
	defd(&o.RequestTimeout, 10*time.Minute)
	defd(&o.StallWindow, 30*time.Second)
	o.ReadAhead = max(o.ReadAhead, o.RangeSize)
	return o
}

// FromEnv returns Options configured as huggingface_hub configures itself: the endpoint
// from HF_ENDPOINT, the token from HF_TOKEN (or the older HUGGING_FACE_HUB_TOKEN), else from
// the token file that `hf auth login` writes (HF_TOKEN_PATH, default $HF_HOME/token, with
// HF_HOME defaulting to $XDG_CACHE_HOME/huggingface or ~/.cache/huggingface).
func FromEnv() Options {
	return Options{Endpoint: os.Getenv("HF_ENDPOINT"), Token: EnvToken()}
}

// EnvToken returns the Hugging Face token the environment provides (see FromEnv), or "".
func EnvToken() string {
	if t := cleanToken(os.Getenv("HF_TOKEN")); t != "" {
		return t
	}
	if t := cleanToken(os.Getenv("HUGGING_FACE_HUB_TOKEN")); t != "" {
		return t
	}
	b, err := os.ReadFile(TokenPath())
	if err != nil {
		return ""
	}
	return cleanToken(string(b))
}

// TokenPath returns where huggingface_hub keeps the token of `hf auth login`.
func TokenPath() string {
	if p := os.Getenv("HF_TOKEN_PATH"); p != "" {
		return expandHome(p)
	}
	home := os.Getenv("HF_HOME")
	if home == "" {
		cache := os.Getenv("XDG_CACHE_HOME")
		if cache == "" {
			h, _ := os.UserHomeDir()
			cache = filepath.Join(h, ".cache")
		}
		home = filepath.Join(cache, "huggingface")
	}
	return filepath.Join(expandHome(home), "token")
}

func expandHome(p string) string {
	if p == "~" || strings.HasPrefix(p, "~/") {
		if h, err := os.UserHomeDir(); err == nil {
			return filepath.Join(h, p[1:])
		}
	}
	return os.ExpandEnv(p)
}

func cleanToken(s string) string { return strings.TrimSpace(s) }
