package main

import (
	"bytes"
	"os"
	"testing"
)

// TestCommittedAssembly checks that every committed x_amd64.s is exactly what the generator
// writes now: a change to a generator must be followed by go generate, and nobody edits the
// generated files by hand.
func TestCommittedAssembly(t *testing.T) {
	for pkg, g := range generators {
		want, err := generate(pkg)
		if err != nil {
			t.Fatalf("%s: %v", pkg, err)
		}
		got, err := os.ReadFile(g.out)
		if err != nil {
			t.Fatalf("%s: %v", pkg, err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is not what the generator writes: run go generate ./codec ./quant ./ops/blend", g.out)
		}
	}
}
