package hardening

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/weft-ml/weft/ckpt"
	"github.com/weft-ml/weft/ops"
)

// TestValidBuildersOpen checks that the builders' valid files are valid: every hostile case
// is a small change of one of them, so a builder bug would make the suite test nothing.
func TestValidBuildersOpen(t *testing.T) {
	st, _ := ValidSafetensors()
	gg, _ := ValidGGUF()
	leg, _ := ValidLegacyTorch()
	for name, b := range map[string][]byte{"v.safetensors": st, "v.gguf": gg, "v.bin": ValidTorchZip(), "legacy.bin": leg} {
		p := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		c, err := ckpt.Open(p)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(c.Tensors) == 0 {
			t.Fatalf("%s: no tensors", name)
		}
		for _, x := range c.Tensors {
			if _, err := ops.ReadAll(x); err != nil {
				t.Fatalf("%s: %s: %v", name, x.Name, err)
			}
		}
		c.Close()
	}
}
