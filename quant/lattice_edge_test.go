package quant

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weft-ml/weft"
)

// latEdgeRows returns the rows (one 256-element block each) of the lattice edge set: the
// inputs where the quantizers take their rare paths (all-zero and tiny groups below each
// type's threshold, constant and single-value groups, zero groups between others, which
// move IQ3_S's packing, equal values that test the sort's order, subnormals, huge values
// whose squares overflow, NaN and infinities).
func latEdgeRows() [][]float32 {
	var rows [][]float32
	row := func(f func(i int) float32) {
		r := make([]float32, 256)
		for i := range r {
			r[i] = f(i)
		}
		rows = append(rows, r)
	}
	g := legacyGaussian(256*8, 77, 1)
	gauss := func(k int) []float32 { return g[256*k : 256*k+256] }
	sign := func(i int) float32 { return float32(1 - 2*((i*7+i/5)%2)) }
	row(func(i int) float32 { return 0 })
	row(func(i int) float32 { return float32(math.Copysign(0, -1)) })
	row(func(i int) float32 { return 1e-13 * sign(i) * float32(1+i%5) })
	row(func(i int) float32 { return 1e-9 * sign(i) * float32(1+i%3) })
	row(func(i int) float32 { return 3e-8 * gauss(0)[i] })
	row(func(i int) float32 { return 1 })
	row(func(i int) float32 { return -1 })
	row(func(i int) float32 { return float32(1 - 2*(i%2)) })
	row(func(i int) float32 {
		if i == 100 {
			return 5
		}
		return 0
	})
	row(func(i int) float32 {
		if i%32 == 3 {
			return float32(i/32 + 1)
		}
		return 0
	})
	row(func(i int) float32 {
		if i < 128 {
			return 0
		}
		return gauss(1)[i]
	})
	row(func(i int) float32 {
		if (i/32)%2 == 0 {
			return 0
		}
		return gauss(2)[i]
	})
	row(func(i int) float32 { return gauss(3)[i] })
	row(func(i int) float32 { return 1e-3 * gauss(4)[i] })
	row(func(i int) float32 { return 1e4 * gauss(5)[i] })
	row(func(i int) float32 { return 1e-40 * float32(1+i%9) * sign(i) })
	row(func(i int) float32 { return 1e18 * gauss(6)[i] })
	row(func(i int) float32 { return 1e20 * gauss(6)[i] })
	row(func(i int) float32 {
		if i == 77 {
			return float32(math.NaN())
		}
		return gauss(7)[i]
	})
	row(func(i int) float32 {
		if i == 200 {
			return float32(math.Inf(1))
		}
		return gauss(7)[i]
	})
	row(func(i int) float32 { return float32((i*37)%5 - 2) })
	row(func(i int) float32 { return 0.5 * sign(i) })
	row(func(i int) float32 {
		if i%41 == 0 {
			return 100 * gauss(0)[i]
		}
		return gauss(0)[i]
	})
	row(func(i int) float32 {
		if i%8 == 5 {
			return -0.01
		}
		return 1 + float32(i%8)*0.1
	})
	row(func(i int) float32 {
		if i%3 == 0 {
			return float32(math.Copysign(0, -1))
		}
		return gauss(1)[i]
	})
	row(func(i int) float32 {
		if i == 9 {
			return 3e38
		}
		return gauss(2)[i]
	})
	return rows
}

// latEdgeWeights returns the weight sets of the edge set (nil: no weights).
func latEdgeWeights() []struct {
	name string
	w    []float32
} {
	fill := func(f func(i int) float32) []float32 {
		w := make([]float32, 256)
		for i := range w {
			w[i] = f(i)
		}
		return w
	}
	g := legacyGaussian(256, 91, 1)
	return []struct {
		name string
		w    []float32
	}{
		{"none", nil},
		{"ones", fill(func(i int) float32 { return 1 })},
		{"random", fill(func(i int) float32 {
			if i%7 == 0 {
				return 0
			}
			return float32(math.Abs(float64(g[i]))) + 0.01
		})},
		{"zeros", fill(func(i int) float32 { return 0 })},
		{"tiny", fill(func(i int) float32 { return 1e-30 })},
		{"zerogroup", fill(func(i int) float32 {
			if i >= 32 && i < 64 {
				return 0
			}
			return 1
		})},
	}
}

// latEdgeInputSHA is the SHA-256 of the edge rows followed by every weight set, as
// little-endian float32 (the reference tool regenerates the same data).
func latEdgeInputSHA() string {
	h := sha256.New()
	var b [4]byte
	put := func(v float32) {
		binary.LittleEndian.PutUint32(b[:], math.Float32bits(v))
		h.Write(b[:])
	}
	for _, r := range latEdgeRows() {
		for _, v := range r {
			put(v)
		}
	}
	for _, ws := range latEdgeWeights() {
		for _, v := range ws.w {
			put(v)
		}
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

// latRandBlocks is legacyRandBlocks for the lattice types: for IQ1_M, whose f16 scale is
// spread over the top nibbles of its four scale words, bit 14 of the scale is bit 6 of the
// block's last byte.
func latRandBlocks(t weft.DType, nblocks int) []byte {
	b := legacyRandBlocks(t, nblocks)
	if t == weft.IQ1_M {
		for k := range nblocks {
			b[k*iq1mBytes+55] &^= 0x40
		}
	}
	return b
}

// latRawBlocks returns nblocks blocks of the same pseudo-random bytes as latRandBlocks,
// without clearing any bit: about one scale in 32 is infinite or NaN.
func latRawBlocks(t weft.DType, nblocks int) []byte {
	id, _ := t.GGML()
	r := legacyRNG{1000 + uint64(id)}
	b := make([]byte, (nblocks*int(t.BlockBytes())+7)/8*8)
	for i := 0; i < len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], r.next())
	}
	return b[:nblocks*int(t.BlockBytes())]
}

// latReadRef reads testdata/lattice_ref.txt: "KEY... VALUE" lines, # comments.
func latReadRef(t *testing.T) map[string]string {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "lattice_ref.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		m[line[:i]] = line[i+1:]
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestLatticeEdgeReference quantizes the edge set with every weight set and compares with
// ggml's C code (compiled without contraction; see testdata/lattice_README.md): the rows
// on which ggml stops with an assertion must be exactly those weft refuses, and the bytes
// of the others must be ggml's.
func TestLatticeEdgeReference(t *testing.T) {
	ref := latReadRef(t)
	if got, want := latEdgeInputSHA(), ref["edge input"]; got != want {
		t.Fatalf("edge input sha256 %s, the reference was made from %s", got, want)
	}
	rows := latEdgeRows()
	checked := 0
	for _, dt := range latTypes {
		for _, ws := range latEdgeWeights() {
			if ws.w == nil && RequiresWeights(dt) {
				continue
			}
			key := dt.String() + " edge " + ws.name
			want, ok := ref[key+" aborts"]
			if !ok {
				t.Errorf("%s: no reference", key)
				continue
			}
			h := sha256.New()
			var aborts []string
			for r, x := range rows {
				q := make([]byte, dt.BlockBytes())
				if err := QuantizeWeighted(dt, x, q, ws.w); err != nil {
					aborts = append(aborts, fmt.Sprint(r))
					continue
				}
				h.Write(q)
			}
			got := strings.Join(aborts, ",")
			if got == "" {
				got = "-"
			}
			if got != want {
				t.Errorf("%s: weft refuses rows %s, ggml asserts on rows %s", key, got, want)
			}
			if sum := fmt.Sprintf("%x", h.Sum(nil)); sum != ref[key+" sha256"] {
				t.Errorf("%s: sha256 of the other rows' blocks %s, ggml's %s", key, sum, ref[key+" sha256"])
			}
			checked++
		}
	}
	t.Logf("%d (type, weight set) combinations of %d rows checked", checked, len(rows))
}

// TestLatticeDequantizeRandomBlocks decodes 1024 pseudo-random blocks per type (every
// field random), with finite scales ("rand") and with some infinite and NaN ones ("raw"),
// and compares with the SHA-256 of ggml's dequantize_row_*.
func TestLatticeDequantizeRandomBlocks(t *testing.T) {
	ref := latReadRef(t)
	for _, dt := range latTypes {
		for _, set := range []string{"rand", "raw"} {
			latCheckRandomBlocks(t, ref, dt, set)
		}
	}
}

func latCheckRandomBlocks(t *testing.T, ref map[string]string, dt weft.DType, set string) {
	{
		src := latRandBlocks(dt, 1024)
		if set == "raw" {
			src = latRawBlocks(dt, 1024)
		}
		if got, want := fmt.Sprintf("%x", sha256.Sum256(src)), ref[dt.String()+" "+set+" bin"]; got != want {
			t.Fatalf("%v: random blocks sha256 %s, the reference was made from %s", dt, got, want)
		}
		y := make([]float32, 1024*256)
		if err := Dequantize(dt, src, y); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 4*len(y))
		nan := 0
		for i, v := range y {
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
			if v != v {
				nan++
			}
		}
		if (set == "raw") != (nan > 0) {
			t.Errorf("%v %s: %d NaN values", dt, set, nan)
		}
		if got, want := fmt.Sprintf("%x", sha256.Sum256(b)), ref[dt.String()+" "+set+" dequant"]; got != want {
			t.Errorf("%v %s: dequantized sha256 %s, ggml's %s", dt, set, got, want)
		}
	}
}
