package hardening

import (
	"errors"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/ckpt"
)

// maxAlloc bounds what opening one hostile file may allocate.
const maxAlloc = 64 << 20

// TestHostileOpen opens every hostile case with ckpt.Open, the library entry point of every
// command: each must fail with an error that names the file and the problem, without
// panicking and allocating less than maxAlloc.
func TestHostileOpen(t *testing.T) {
	cs := Cases()
	if len(cs) < 40 {
		t.Fatalf("only %d hostile cases", len(cs))
	}
	names := map[string]bool{}
	for _, c := range cs {
		if names[c.Name] {
			t.Fatalf("case name %q used twice", c.Name)
		}
		names[c.Name] = true
		t.Run(c.Name, func(t *testing.T) {
			p, err := c.Build(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			cp, err := openNoPanic(t, p)
			runtime.ReadMemStats(&after)
			if d := after.TotalAlloc - before.TotalAlloc; d > maxAlloc {
				t.Errorf("opening allocated %d MiB (limit %d MiB)", d>>20, maxAlloc>>20)
			}
			if err == nil {
				cp.Close()
				t.Fatalf("%s: opened without error (%d tensors)", p, len(cp.Tensors))
			}
			checkMessage(t, c, p, err.Error())
			if c.Class == nil {
				t.Errorf("case %s has no error class", c.Name)
			} else if !errors.Is(err, c.Class) {
				t.Errorf("error is not %v: %v", c.Class, err)
			}
			if testing.Verbose() {
				t.Logf("%s", err)
			}
		})
	}
}

// openNoPanic opens p, turning a panic into a test failure that names the file.
func openNoPanic(t *testing.T, p string) (c *weft.Checkpoint, err error) {
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("%s: panic: %v", p, r)
		}
	}()
	return ckpt.Open(p)
}

// checkMessage asserts that msg names the file of case c (opened at path p) and one of the
// problems c expects.
func checkMessage(t *testing.T, c Case, p, msg string) {
	t.Helper()
	name := c.Names
	if name == "" {
		name = filepath.Base(p)
	}
	if !strings.Contains(msg, name) {
		t.Errorf("error does not name the file %s: %s", name, msg)
	}
	for _, w := range c.Want {
		if strings.Contains(msg, w) {
			return
		}
	}
	t.Errorf("error does not name the problem (want one of %q): %s", c.Want, msg)
}
