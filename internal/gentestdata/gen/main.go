// Command gen writes the project's test data (see package gentestdata): go generate runs it
// as `go run ./gen -o ../../testdata` from internal/gentestdata.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/weft-ml/weft/internal/gentestdata"
)

func main() {
	out := flag.String("o", "", "the testdata folder to write")
	flag.Parse()
	if *out == "" || flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: gen -o TESTDATA_DIR")
		os.Exit(2)
	}
	if err := gentestdata.Generate(context.Background(), *out); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}
