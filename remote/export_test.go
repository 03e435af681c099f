package remote

import (
	"os"
	"time"
)

// SetRetryAfterUnit makes Retry-After seconds last d in tests; it returns a function that
// restores the unit.
func SetRetryAfterUnit(d time.Duration) func() {
	old := retryAfterUnit
	retryAfterUnit = d
	return func() { retryAfterUnit = old }
}

func writeFile(p, s string) error { return os.WriteFile(p, []byte(s), 0o600) }
