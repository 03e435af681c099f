package quant

import (
	"fmt"
	"os"
	"runtime"
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
	if os.Getenv("LEGACYDEV") == "" {
		t.Skip("dev only")
	}
	runtime.LockOSThread()
	x := legacyBenchInput()
	y := make([]float32, len(x))
	for _, typ := range []weft.DType{weft.Q8_0, weft.Q4_0, weft.Q5_0, weft.Q4_1, weft.Q5_1, weft.IQ4_NL, weft.MXFP4, weft.TQ1_0, weft.TQ2_0} {
		c := codecs[typ]
		q := make([]byte, len(x)/int(typ.BlockSize())*int(typ.BlockBytes()))
		bq, bd := 1e9, 1e9
		reps := 5
		if typ == weft.IQ4_NL { reps = 1 }
		for r := 0; r < reps; r++ {
			t0 := legacyCPU()
			c.quant(x, q)
			t1 := legacyCPU()
			c.dequant(q, y)
			t2 := legacyCPU()
			bq = min(bq, t1-t0)
			bd = min(bd, t2-t1)
		}
		fmt.Printf("%-7v quant %7.1f Melem/s  dequant %7.1f Melem/s (cpu time)\n", typ, float64(len(x))/bq/1e6, float64(len(x))/bd/1e6)
	}
}
