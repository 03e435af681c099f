package quant

// Helpers shared by the legacy and i-quant tests: reading ggml's reference vectors
// (../../shared/vectors/ggml), the reference hashes in testdata/legacy_ref.txt, and
// deterministic pseudo-random inputs.

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/internal/testshared"
)

// legacyTypes are the block types implemented in legacy.go and iquants.go.
var legacyTypes = []weft.DType{
	weft.Q4_0, weft.Q4_1, weft.Q5_0, weft.Q5_1, weft.Q8_0, weft.Q8_1,
	weft.IQ4_NL, weft.IQ4_XS, weft.MXFP4, weft.TQ1_0, weft.TQ2_0,
}

// legacyQuantTypes are those of legacyTypes that can be quantized.
var legacyQuantTypes = []weft.DType{
	weft.Q4_0, weft.Q4_1, weft.Q5_0, weft.Q5_1, weft.Q8_0, weft.Q8_1,
	weft.IQ4_NL, weft.IQ4_XS, weft.MXFP4, weft.TQ1_0, weft.TQ2_0,
}

// legacySharedDir returns the shared ggml vector directory, skipping the test when the
// shared folder is absent (it is always present in CI).
func legacySharedDir(t testing.TB) string {
	t.Helper()
	return testshared.Path(t, "vectors/ggml")
}

func legacyReadFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func legacyReadF32(t testing.TB, path string) []float32 {
	t.Helper()
	b := legacyReadFile(t, path)
	if len(b)%4 != 0 {
		t.Fatalf("%s: %d bytes is not a whole number of float32", path, len(b))
	}
	f := make([]float32, len(b)/4)
	for i := range f {
		f[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return f
}

func legacyF32Bytes(f []float32) []byte {
	b := make([]byte, 4*len(f))
	for i, v := range f {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	return b
}

// legacyFileName is ggml's spelling of a type in file names: "q4_0", "iq4_nl".
func legacyFileName(t weft.DType) string { return strings.ToLower(t.String()) }

func legacySHA(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// legacyRefHashes reads testdata/legacy_ref.txt: "<type> <set> <bin|dequant> <sha256>".
func legacyRefHashes(t testing.TB) map[string]string {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "legacy_ref.txt"))
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
		p := strings.Fields(line)
		if len(p) != 4 || len(p[3]) != 64 {
			t.Fatalf("testdata/legacy_ref.txt: bad line %q", line)
		}
		m[p[0]+" "+p[1]+" "+p[2]] = p[3]
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return m
}

// legacyRNG is splitmix64, the generator the reference-hash tool used for its random
// blocks.
type legacyRNG struct{ s uint64 }

func (r *legacyRNG) next() uint64 {
	r.s += 0x9e3779b97f4a7c15
	z := r.s
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// float64 returns a uniform value in [0, 1).
func (r *legacyRNG) float64() float64 { return float64(r.next()>>11) / (1 << 53) }

// gauss returns a standard normal value (Box-Muller).
func (r *legacyRNG) gauss() float64 {
	u := r.float64()
	for u == 0 {
		u = r.float64()
	}
	return math.Sqrt(-2*math.Log(u)) * math.Cos(2*math.Pi*r.float64())
}

func legacyGaussian(n int, seed uint64, sigma float64) []float32 {
	r := legacyRNG{seed}
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(r.gauss() * sigma)
	}
	return x
}

// legacyRandBlocks returns nblocks pseudo-random blocks of type t exactly as the
// reference-hash tool made them: splitmix64 seeded with 1000 + the ggml type id, its
// outputs stored little endian, then bit 14 of each block's f16 scale(s) cleared so that
// every scale is finite (below 2).
func legacyRandBlocks(t weft.DType, nblocks int) []byte {
	id, _ := t.GGML()
	r := legacyRNG{1000 + uint64(id)}
	bb := int(t.BlockBytes())
	b := make([]byte, (nblocks*bb+7)/8*8)
	for i := 0; i < len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], r.next())
	}
	b = b[:nblocks*bb]
	for k := 0; k < nblocks; k++ {
		blk := b[k*bb : (k+1)*bb]
		switch t {
		case weft.MXFP4:
		case weft.TQ1_0:
			blk[53] &^= 0x40
		case weft.TQ2_0:
			blk[65] &^= 0x40
		case weft.Q4_1, weft.Q5_1:
			blk[1] &^= 0x40
			blk[3] &^= 0x40
		default:
			blk[1] &^= 0x40
		}
	}
	return b
}

// legacyFirstDiff describes the first difference between two float32 slices.
func legacyFirstDiff(got, want []float32, blockSize int) string {
	for i := range got {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			return fmt.Sprintf("element %d (block %d): got %g (%#08x), want %g (%#08x)",
				i, i/blockSize, got[i], math.Float32bits(got[i]), want[i], math.Float32bits(want[i]))
		}
	}
	return "no difference"
}

// legacyFirstBlockDiff describes the first block in which two encodings differ.
func legacyFirstBlockDiff(got, want []byte, blockBytes int) string {
	for i := range got {
		if got[i] != want[i] {
			k := i / blockBytes
			return fmt.Sprintf("byte %d (block %d): got block % x, want % x", i, k,
				got[k*blockBytes:(k+1)*blockBytes], want[k*blockBytes:(k+1)*blockBytes])
		}
	}
	return "no difference"
}
