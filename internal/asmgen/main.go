// Command asmgen writes weft's AVX2 and AVX-512 kernels: the Go assembly files beside the
// scalar code they accelerate (codec/codec_amd64.s, quant/quant_amd64.s,
// ops/blend/blend_amd64.s). It is a module of its own so that weft does not depend on avo, the
// assembler generator it uses.
//
// Each package's x_amd64.go runs it through go generate:
//
//	go run -C ../internal/asmgen . -pkg codec
//
// The output depends on nothing but this source: gen_test.go checks that the committed
// files are exactly what it writes (make asm-check).
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/mmcloughlin/avo/build"
	"github.com/mmcloughlin/avo/operand"
	"github.com/mmcloughlin/avo/pass"
	"github.com/mmcloughlin/avo/printer"
)

// generators maps a package name to the function that adds its kernels to the build
// context, and to the file they go to (relative to this directory).
var generators = map[string]struct {
	gen func()
	out string
}{
	"codec": {genCodec, "../../codec/codec_amd64.s"},
	"quant": {genQuant, "../../quant/quant_amd64.s"},
	"blend": {genBlend, "../../ops/blend/blend_amd64.s"},
}

func main() {
	// avo's build package registers flags of its own on flag.CommandLine.
	fs := flag.NewFlagSet("asmgen", flag.ExitOnError)
	pkg := fs.String("pkg", "", "package whose kernels to write: codec, quant or blend")
	out := fs.String("out", "", "output .s file (default: the package's x_amd64.s)")
	fs.Parse(os.Args[1:])
	b, err := generate(*pkg)
	if *out == "" {
		*out = generators[*pkg].out
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "asmgen:", err)
		os.Exit(1)
	}
	if err := os.WriteFile(*out, b, 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "asmgen:", err)
		os.Exit(1)
	}
}

// c is the build context of the file being generated.
var c *build.Context

// generate returns the assembly source of pkg's kernels.
func generate(pkg string) ([]byte, error) {
	g, ok := generators[pkg]
	if !ok {
		return nil, fmt.Errorf("unknown package %q", pkg)
	}
	c = build.NewContext()
	c.ConstraintExpr("amd64,!purego")
	consts = map[string]operand.Mem{}
	g.gen()
	f, err := c.Result()
	if err != nil {
		return nil, err
	}
	if err := pass.Compile.Execute(f); err != nil {
		return nil, err
	}
	return printer.NewGoAsm(printer.Config{Name: "internal/asmgen", Pkg: pkg}).Print(f)
}
