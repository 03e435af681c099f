package quant

import (
	"fmt"
	"os"
	"runtime"
	"syscall"
	"testing"
	"unsafe"

	"github.com/weft-ml/weft"
)

func kThreadCPU() float64 {
	var ts syscall.Timespec
	syscall.Syscall(syscall.SYS_CLOCK_GETTIME, 3 /* CLOCK_THREAD_CPUTIME_ID */, uintptr(unsafe.Pointer(&ts)), 0)
	return float64(ts.Nano()) / 1e9
}

func TestKDevCPU(t *testing.T) {
	types := os.Getenv("KDEV")
	if types == "" {
		t.Skip("KDEV not set")
	}
	runtime.LockOSThread()
	x := kBenchData()
	for _, typ := range kTypes {
		if types != "all" && types != typ.String() {
			continue
		}
		bb := int(typ.BlockBytes())
		q := make([]byte, len(x)/kQK*bb)
		y := make([]float32, len(x))
		for i := range y {
			y[i] = 1
		}
		for i := range q {
			q[i] = 1
		}
		bq, bd := 1e9, 1e9
		for r := 0; r < 3; r++ {
			t0 := kThreadCPU()
			for i := 0; i < len(x); i += kBenchRow {
				Quantize(typ, x[i:i+kBenchRow], q[i/kQK*bb:(i+kBenchRow)/kQK*bb])
			}
			bq = min(bq, kThreadCPU()-t0)
		}
		for r := 0; r < 10; r++ {
			t0 := kThreadCPU()
			for i := 0; i < len(x); i += kBenchRow {
				Dequantize(typ, q[i/kQK*bb:(i+kBenchRow)/kQK*bb], y[i:i+kBenchRow])
			}
			bd = min(bd, kThreadCPU()-t0)
		}
		fmt.Printf("GO %v quantize %.1f Melem/s dequantize %.1f Melem/s (cpu time)\n", typ, float64(len(x))/bq/1e6, float64(len(x))/bd/1e6)
	}
	_ = weft.Q4_K
}

func TestKDevSmall(t *testing.T) {
	if os.Getenv("KDEV") == "" {
		t.Skip()
	}
	runtime.LockOSThread()
	x := kGaussian(kBenchRow, 1, 1)
	for _, typ := range kTypes {
		bb := int(typ.BlockBytes())
		q := make([]byte, len(x)/kQK*bb)
		Quantize(typ, x, q)
		y := make([]float32, len(x))
		best := 1e9
		for r := 0; r < 3; r++ {
			t0 := kThreadCPU()
			for k := 0; k < 12000; k++ {
				Dequantize(typ, q, y)
			}
			best = min(best, kThreadCPU()-t0)
		}
		fmt.Printf("GO small %v dequantize %.1f Melem/s\n", typ, float64(len(x))*12000/best/1e6)
	}
}

func TestKDevStore(t *testing.T) {
	if os.Getenv("KDEV") == "" {
		t.Skip()
	}
	runtime.LockOSThread()
	y := make([]float32, 16<<20)
	for i := range y {
		y[i] = 1
	}
	best := 1e9
	for r := 0; r < 10; r++ {
		t0 := kThreadCPU()
		v := float32(r)
		for i := 0; i < len(y); i += 4 {
			y[i] = v
			y[i+1] = v
			y[i+2] = v
			y[i+3] = v
		}
		best = min(best, kThreadCPU()-t0)
	}
	fmt.Printf("GO scalar store %.1f Melem/s\n", float64(len(y))/best/1e6)
	for _, n := range []int{256, 512, 1024, 4096} {
		best = 1e9
		src := make([]float32, n)
		for r := 0; r < 10; r++ {
			t0 := kThreadCPU()
			for i := 0; i < len(y); i += n {
				copy(y[i:i+n], src)
			}
			best = min(best, kThreadCPU()-t0)
		}
		fmt.Printf("GO copy %d store %.1f Melem/s\n", n, float64(len(y))/best/1e6)
	}
}

func TestKDevStore64(t *testing.T) {
	if os.Getenv("KDEV") == "" {
		t.Skip()
	}
	runtime.LockOSThread()
	y := make([]uint64, 8<<20)
	for i := range y {
		y[i] = 1
	}
	best := 1e9
	for r := 0; r < 10; r++ {
		t0 := kThreadCPU()
		v := uint64(r)
		for i := 0; i < len(y); i += 4 {
			y[i] = v
			y[i+1] = v
			y[i+2] = v
			y[i+3] = v
		}
		best = min(best, kThreadCPU()-t0)
	}
	fmt.Printf("GO u64 store %.1f Melem/s\n", float64(2*len(y))/best/1e6)
}
