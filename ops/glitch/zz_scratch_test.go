package glitch

import (
	"os"
	"testing"
)

func TestZZScratch(t *testing.T) {
	in := open(t, fixture(t, "hf/tiny-llama-base"))
	out, _, err := Add(in, AddOptions{Count: 2, Seed: 42, Special: true})
	if err != nil {
		t.Fatal(err)
	}
	os.RemoveAll("/tmp/glitchout")
	writeOpen(t, out, "/tmp/glitchout", 4, in)
}
