package quant

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/weft-ml/weft"
	"golang.org/x/sys/unix"
)

func legacyCPU() float64 {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts)
	return float64(ts.Sec) + float64(ts.Nsec)*1e-9
}

func TestLegacyDevCPU(t *testing.T) {
	env := os.Getenv("LEGACYDEV")
	if env == "" {
		t.Skip("dev only")
	}
	runtime.LockOSThread()
	x := legacyGaussian(1<<22, 77, 1)
	y := make([]float32, len(x))
	for _, typ := range legacyTypes {
		if env != "all" && !strings.Contains(","+env+",", ","+typ.String()+",") {
			continue
		}
		c := codecs[typ]
		var q []byte
		if c.quant != nil {
			q = make([]byte, len(x)/int(typ.BlockSize())*int(typ.BlockBytes()))
		} else {
			q = legacyRandBlocks(typ, len(x)/int(typ.BlockSize()))
		}
		bq, bd := 1e9, 1e9
		reps := 15
		if typ == weft.IQ4_NL || typ == weft.IQ4_XS { reps = 2 }
		for r := 0; r < reps; r++ {
			t0 := legacyCPU()
			if c.quant != nil { c.quant(x, q) }
			t1 := legacyCPU()
			c.dequant(q, y)
			t2 := legacyCPU()
			bq = min(bq, t1-t0)
			bd = min(bd, t2-t1)
		}
		fmt.Printf("%-7v quant %7.1f Melem/s  dequant %7.1f Melem/s (cpu time)\n", typ, float64(len(x))/bq/1e6, float64(len(x))/bd/1e6)
	}
}
