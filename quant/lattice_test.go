package quant

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/gguf"
	"github.com/weft-ml/weft/imatrix"
	"github.com/weft-ml/weft/internal/testshared"
)

var latTypes = []weft.DType{weft.IQ1_S, weft.IQ1_M, weft.IQ2_XXS, weft.IQ2_XS, weft.IQ2_S, weft.IQ3_XXS, weft.IQ3_S}

// latFileTypes are the llama-quantize file types of the out-8l-imat-*.gguf references that
// use lattice types.
var latFileTypes = []string{"IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "IQ3_XXS", "IQ3_XS", "IQ3_S", "IQ3_M"}

const lqDir = "vectors/llama-quantize"

func latIsLattice(t weft.DType) bool {
	for _, l := range latTypes {
		if l == t {
			return true
		}
	}
	return false
}

// TestLatticeGridsMatchGGML checks the codebooks, expanded to ggml's table layout (the
// iq*_grid tables of ggml-common.h: one little-endian uint64 or uint32 per point, one byte
// per coordinate), against the SHA-256 of ggml's tables at commit d99724f2 (which are the
// tables of every ggml since these types exist), and the sign table likewise.
func TestLatticeGridsMatchGGML(t *testing.T) {
	cases := []struct {
		name string
		g    *latGrid
		sum  string
	}{
		{"iq2xxs_grid", iq2xxsGrid, "05826b5d3e472a3a78f196be62ac78acf81df0f909626e12ab9fa2a5d490dd54"},
		{"iq2xs_grid", iq2xsGrid, "06e47aaca60b4dc1d9b5a3f34540437058a6b142b4d7a59d5ded769b4d1bf1de"},
		{"iq2s_grid", iq2sGrid, "e1aa1473412b0552c2174c30ef22ab4073f6a181b85a17056e8249bd2932fd88"},
		{"iq1s_grid", iq1sGrid, "07540ffc1aeaf6ad4d97e96b0fcc765aae39671d4ae4a27bbd0e796fde167c6a"},
		{"iq3xxs_grid", iq3xxsGrid, "46e35f5a997efdee6c99ce57854c8a0d4f0ff8ca57e5e8a60c0793ea580acf5d"},
		{"iq3s_grid", iq3sGrid, "bd1af4945a1717c65610b0284e4628b9a1ba3b306fae3a06f6e5f597356e349f"},
	}
	for _, c := range cases {
		var b []byte
		for _, v := range c.g.vals {
			for i := range c.g.dim {
				b = append(b, byte(v[i]))
			}
		}
		if got := fmt.Sprintf("%x", sha256.Sum256(b)); got != c.sum {
			t.Errorf("%s: sha256 %s, ggml's table has %s", c.name, got, c.sum)
		}
		// The packed points (ggml's kgrid_*) are strictly ascending, so ranks are indices.
		for k := 1; k < len(c.g.pts); k++ {
			if c.g.pts[k] <= c.g.pts[k-1] {
				t.Fatalf("%s: packed points not ascending at %d", c.name, k)
			}
		}
	}
	if got := fmt.Sprintf("%x", sha256.Sum256(ksignsIQ2[:])); got != "a76742a603f8beca5212ecce0f1f02f11a4887fd2f7c8b15aca0ea3eb3380c31" {
		t.Errorf("ksigns_iq2xs: sha256 %s", got)
	}
}

// ---- shared reference data ----

type latTensor struct {
	info weft.TensorInfo
	data []byte
}

var (
	latFilesMu sync.Mutex
	latFiles   = map[string][]latTensor{}
)

// latReadGGUF returns every tensor of a shared GGUF file, with its bytes (cached: the
// files are small).
func latReadGGUF(t *testing.T, rel string) []latTensor {
	t.Helper()
	p := testshared.Path(t, rel)
	latFilesMu.Lock()
	defer latFilesMu.Unlock()
	if ts, ok := latFiles[p]; ok {
		return ts
	}
	c, err := gguf.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var ts []latTensor
	for _, x := range c.Tensors {
		n, err := x.Size()
		if err != nil {
			t.Fatal(err)
		}
		b := make([]byte, n)
		if _, err := x.Data.ReadAt(b, 0); err != nil {
			t.Fatalf("%s: %s: %v", rel, x.Name, err)
		}
		ts = append(ts, latTensor{x.TensorInfo, b})
	}
	latFiles[p] = ts
	return ts
}

func latFind(ts []latTensor, name string) *latTensor {
	for i := range ts {
		if ts[i].info.Name == name {
			return &ts[i]
		}
	}
	return nil
}

func latF32(b []byte) []float32 {
	f := make([]float32, len(b)/4)
	for i := range f {
		f[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return f
}

// latImatrix reads the shared importance matrix with the imatrix package, which gives
// each column's weight as llama-quantize's load_imatrix does (in_sum2[i] / counts).
func latImatrix(t *testing.T) *imatrix.Matrix {
	t.Helper()
	m, err := imatrix.Open(testshared.Path(t, lqDir+"/imatrix.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	if m.Len() != 56 {
		t.Fatalf("imatrix: %d entries, the README says 56", m.Len())
	}
	return m
}

// ---- dequantization ----

type latIndexEntry struct {
	File     string `json:"file"`
	Source   string `json:"source"`
	Segments []struct {
		Tensor   string  `json:"tensor"`
		GGMLType string  `json:"ggml_type"`
		Shape    []int64 `json:"shape"`
		Rows     int     `json:"rows"`
		RowLen   int     `json:"row_len"`
		Offset   int     `json:"offset_bytes"`
		NFloats  int     `json:"n_floats"`
	} `json:"segments"`
}

// TestLatticeDequantReference decodes the first rows of the tensors of dequant-index.json
// and compares them bit for bit with ggml's dequantization in dequant-TYPE.f32.
func TestLatticeDequantReference(t *testing.T) {
	b, err := os.ReadFile(testshared.Path(t, lqDir+"/dequant-index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var index map[string]latIndexEntry
	if err := json.Unmarshal(b, &index); err != nil {
		t.Fatal(err)
	}
	seen := map[weft.DType]int{}
	for _, ft := range latFileTypes {
		e, ok := index[ft]
		if !ok {
			t.Fatalf("dequant-index.json has no %s", ft)
		}
		ref := latF32(must(os.ReadFile(testshared.Path(t, lqDir+"/"+e.File))))
		ts := latReadGGUF(t, lqDir+"/"+e.Source)
		if len(e.Segments) != 2 {
			t.Fatalf("%s: %d segments", ft, len(e.Segments))
		}
		for si, sg := range e.Segments {
			dt, err := weft.ParseDType(sg.GGMLType)
			if err != nil || !latIsLattice(dt) {
				t.Fatalf("%s segment %d: type %q", ft, si, sg.GGMLType)
			}
			x := latFind(ts, sg.Tensor)
			if x == nil || x.info.DType != dt {
				t.Fatalf("%s: %s: not a %v tensor in %s", ft, sg.Tensor, dt, e.Source)
			}
			n := sg.Rows * sg.RowLen
			nb := n / 256 * int(dt.BlockBytes())
			got := make([]float32, n)
			if err := Dequantize(dt, x.data[:nb], got); err != nil {
				t.Fatal(err)
			}
			want := ref[sg.Offset/4 : sg.Offset/4+sg.NFloats]
			bad := 0
			for i := range want {
				if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
					if bad < 5 {
						t.Errorf("%s %s (%v) element %d: got %g (%08x), ggml %g (%08x)", ft, sg.Tensor, dt, i, got[i], math.Float32bits(got[i]), want[i], math.Float32bits(want[i]))
					}
					bad++
				}
			}
			if bad > 0 {
				t.Errorf("%s %s (%v): %d of %d values differ", ft, sg.Tensor, dt, bad, len(want))
			}
			seen[dt] += len(want)
		}
	}
	for _, dt := range latTypes {
		if seen[dt] == 0 {
			t.Errorf("%v: no reference dequantization", dt)
		}
	}
	t.Logf("values compared per type: %v", seen)
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestLatticeDequantAllTensors decodes every lattice-typed tensor of every
// out-8l-imat-*.gguf file and compares it bit for bit with latRefDequant, a literal
// transliteration of ggml's dequantize_row_* over ggml's table layout (the fast decoders
// use per-codebook level tables and sign masks instead). The reference dequantization of
// ggml itself covers only the first rows (TestLatticeDequantReference); this covers every
// block, and reports how many codebook points the files use.
func TestLatticeDequantAllTensors(t *testing.T) {
	used := map[weft.DType]map[int]bool{}
	tensors := map[weft.DType]int{}
	for _, ft := range latFileTypes {
		for _, x := range latReadGGUF(t, lqDir+"/out-8l-imat-"+ft+".gguf") {
			dt := x.info.DType
			if !latIsLattice(dt) {
				continue
			}
			n := int(x.info.Rows() * x.info.RowLen())
			got := make([]float32, n)
			if err := Dequantize(dt, x.data, got); err != nil {
				t.Fatal(err)
			}
			want := make([]float32, n)
			pts := latRefDequant(dt, x.data, want)
			if used[dt] == nil {
				used[dt] = map[int]bool{}
			}
			for _, p := range pts {
				used[dt][p] = true
			}
			for i := range want {
				if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
					t.Fatalf("%s: %s (%v): element %d: got %08x, literal dequantization %08x", ft, x.info.Name, dt, i, math.Float32bits(got[i]), math.Float32bits(want[i]))
				}
			}
			tensors[dt]++
		}
	}
	for _, dt := range latTypes {
		if tensors[dt] == 0 {
			t.Errorf("%v: no tensor of this type in the reference files", dt)
		}
		t.Logf("%-8v %3d tensors, %4d codebook points used", dt, tensors[dt], len(used[dt]))
	}
}

// ---- quantization ----

// latQuantJob is one reference tensor to reproduce: its name, type and bytes.
type latQuantJob struct {
	file string
	name string
	dt   weft.DType
	want []byte
}

// latQuantJobs lists every lattice-typed tensor of the out-8l-imat-*.gguf files, once per
// (name, type): the README notes, and this checks, that a tensor's bytes depend only on
// its type.
func latQuantJobs(t *testing.T) []latQuantJob {
	var jobs []latQuantJob
	seen := map[string]int{}
	for _, ft := range latFileTypes {
		f := "out-8l-imat-" + ft + ".gguf"
		for _, x := range latReadGGUF(t, lqDir+"/"+f) {
			if !latIsLattice(x.info.DType) {
				continue
			}
			key := x.info.Name + "/" + x.info.DType.String()
			if i, ok := seen[key]; ok {
				if string(jobs[i].want) != string(x.data) {
					t.Fatalf("%s in %s and %s: same type, different bytes", key, jobs[i].file, f)
				}
				continue
			}
			seen[key] = len(jobs)
			jobs = append(jobs, latQuantJob{f, x.info.Name, x.info.DType, x.data})
		}
	}
	return jobs
}

// TestLatticeQuantizeReference quantizes the input model's rows with the importance
// matrix (no weights for token_embd and output, which it has no entries for) and compares
// every block of every lattice-typed tensor with llama-quantize's output. Every block must
// be identical. (The README of the reference data warns that FMA contraction may change
// some blocks; it does not for these types: ggml-quants.c is part of ggml-base, which
// llama.cpp's build compiles without -march=native. Built with -march=native, the same C
// differs from llama-quantize in 384 of these blocks; built without contraction it
// matches every block, as weft does. See testdata/lattice_README.md.) With -short, only
// the first tensor of each type is compared.
func TestLatticeQuantizeReference(t *testing.T) {
	in := latReadGGUF(t, lqDir+"/input-8l-f32.gguf")
	imat := latImatrix(t)
	jobs := latQuantJobs(t)
	if testing.Short() {
		var first []latQuantJob
		have := map[weft.DType]bool{}
		for _, j := range jobs {
			if !have[j.dt] {
				have[j.dt] = true
				first = append(first, j)
			}
		}
		jobs = first
	}
	type stat struct{ tensors, unweighted, identical, blocks, diff int }
	stats := map[weft.DType]*stat{}
	for _, dt := range latTypes {
		stats[dt] = &stat{}
	}
	// Quantize in parallel, then compare in order.
	got := make([][]byte, len(jobs))
	errs := make([]error, len(jobs))
	var wg sync.WaitGroup
	next := make(chan int)
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				j := jobs[i]
				src := latFind(in, j.name)
				if src == nil || src.info.DType != weft.F32 {
					errs[i] = fmt.Errorf("%s: no F32 tensor %s in the input", j.file, j.name)
					continue
				}
				got[i] = make([]byte, len(j.want))
				// w is nil for token_embd and output: llama-quantize had no weights for them.
				w, err := imat.ForTensor(src.info)
				if err != nil {
					errs[i] = err
					continue
				}
				errs[i] = QuantizeWeighted(j.dt, latF32(src.data), got[i], w)
			}
		}()
	}
	for i := range jobs {
		next <- i
	}
	close(next)
	wg.Wait()
	for i, j := range jobs {
		if errs[i] != nil {
			t.Fatalf("%v %s: %v", j.dt, j.name, errs[i])
		}
		bb := int(j.dt.BlockBytes())
		var diff []int
		for b := 0; b < len(j.want)/bb; b++ {
			if string(got[i][b*bb:(b+1)*bb]) != string(j.want[b*bb:(b+1)*bb]) {
				diff = append(diff, b)
			}
		}
		s := stats[j.dt]
		s.tensors++
		s.blocks += len(j.want) / bb
		s.diff += len(diff)
		if len(diff) == 0 {
			s.identical++
		}
		if imat.Weights(j.name) == nil {
			s.unweighted++
		}
		if len(diff) > 0 {
			t.Errorf("%v %s (%s, importance weights: %v): %d blocks differ from llama-quantize's: %v", j.dt, j.name, j.file, imat.Weights(j.name) != nil, len(diff), diff)
		}
	}
	for _, dt := range latTypes {
		s := stats[dt]
		if s.tensors == 0 {
			t.Errorf("%v: no reference tensor", dt)
		}
		t.Logf("%-8v %3d tensors (%d without importance weights), %3d identical; %6d blocks, %d differ from llama-quantize's", dt, s.tensors, s.unweighted, s.identical, s.blocks, s.diff)
	}
}

// ---- API ----

func TestLatticeQuantizeWithoutWeights(t *testing.T) {
	x := make([]float32, 512)
	for i := range x {
		x[i] = float32(math.Sin(float64(i)))
	}
	for _, dt := range latTypes {
		dst := make([]byte, 2*dt.BlockBytes())
		err := Quantize(dt, x, dst)
		errW := QuantizeWeighted(dt, x, dst, nil)
		if RequiresWeights(dt) {
			if err == nil || !strings.Contains(err.Error(), dt.String()) || !strings.Contains(err.Error(), "importance") {
				t.Errorf("%v: Quantize without weights: %v", dt, err)
			}
			if errW == nil || !strings.Contains(errW.Error(), dt.String()) {
				t.Errorf("%v: QuantizeWeighted without weights: %v", dt, errW)
			}
			if CanQuantize(dt) {
				t.Errorf("%v: CanQuantize true", dt)
			}
		} else {
			if err != nil || errW != nil {
				t.Errorf("%v: %v, %v", dt, err, errW)
			}
			if !CanQuantize(dt) {
				t.Errorf("%v: CanQuantize false", dt)
			}
		}
		if !CanDequantize(dt) || !UsesWeights(dt) {
			t.Errorf("%v: CanDequantize %v, UsesWeights %v", dt, CanDequantize(dt), UsesWeights(dt))
		}
	}
	// ggml's list of types requiring weights.
	for _, dt := range latTypes {
		want := dt == weft.IQ2_XXS || dt == weft.IQ2_XS || dt == weft.IQ1_S
		if RequiresWeights(dt) != want {
			t.Errorf("RequiresWeights(%v) = %v", dt, !want)
		}
	}
}

func TestLatticeWeightedErrors(t *testing.T) {
	x := make([]float32, 1024)
	w := make([]float32, 256)
	for i := range w {
		w[i] = 1
	}
	dst := make([]byte, 2*weft.IQ2_XXS.BlockBytes())
	for _, c := range []struct {
		x       []float32
		w       []float32
		dst     []byte
		wantMsg string
	}{
		{x[:512], w[:100], dst, "100 weights"},
		{x[:256*3], append(w, w...), make([]byte, 3*66), "768 elements is not a whole number of rows of 512"},
		{x[:512], w, dst[:10], "bytes"},
	} {
		err := QuantizeWeighted(weft.IQ2_XXS, c.x, c.dst, c.w)
		if err == nil || !strings.Contains(err.Error(), c.wantMsg) || !strings.Contains(err.Error(), "IQ2_XXS") {
			t.Errorf("got %v, want an error naming IQ2_XXS and %q", err, c.wantMsg)
		}
	}
	// Non-finite values: an error naming the type, and the row when there are weights;
	// never a panic.
	for _, dt := range latTypes {
		y := make([]float32, 512)
		for i := range y {
			y[i] = float32(i%7) - 3
		}
		y[300] = float32(math.NaN())
		q := make([]byte, 2*dt.BlockBytes())
		if err := QuantizeWeighted(dt, y, q, w); err != nil && !strings.Contains(err.Error(), "row 1") {
			t.Errorf("%v with a NaN in row 1: %v", dt, err)
		}
		y[300] = 1e20 // overflowing squares (which rows ggml refuses: TestLatticeEdgeReference)
		if err := QuantizeWeighted(dt, y, q, w); err != nil && !strings.Contains(err.Error(), dt.String()+": row 1: super-block 0") {
			t.Errorf("%v with 1e20 in row 1: %v", dt, err)
		}
	}
}

// TestLatticeConcurrent builds a codebook's search tables from several goroutines at once
// (run it with -race) and quantizes the same rows concurrently: every goroutine sees the
// same tables and writes the same bytes.
func TestLatticeConcurrent(t *testing.T) {
	o := &latSearchOnce{g: iq3xxsGrid, nwant: 2}
	var wg sync.WaitGroup
	got := make([]*latSearch, 4)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i] = o.get()
		}()
	}
	wg.Wait()
	ref := buildLatSearch(iq3xxsGrid, 2)
	for i, s := range got {
		if s != got[0] {
			t.Fatalf("goroutine %d got other tables", i)
		}
		if fmt.Sprint(s.kmap) != fmt.Sprint(ref.kmap) || fmt.Sprint(s.neigh) != fmt.Sprint(ref.neigh) {
			t.Fatal("tables differ from a fresh build")
		}
	}
	x := legacyGaussian(4*256, 3, 1)
	w := make([]float32, 256)
	for i := range w {
		w[i] = 1 + float32(i%5)
	}
	for _, dt := range latTypes {
		outs := make([][]byte, 4)
		errs := make([]error, 4)
		for i := range outs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				outs[i] = make([]byte, 4*dt.BlockBytes())
				errs[i] = QuantizeWeighted(dt, x, outs[i], w)
			}()
		}
		wg.Wait()
		for i := range outs {
			if errs[i] != nil || string(outs[i]) != string(outs[0]) {
				t.Fatalf("%v goroutine %d: %v, or other bytes", dt, i, errs[i])
			}
		}
	}
}
