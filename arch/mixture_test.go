package arch_test

import (
	"encoding/json"
	"os"
	"sort"
	"strings"
	"testing"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/arch"
	"github.com/weft-ml/weft/gguf"
	"github.com/weft-ml/weft/internal/testshared"
)

// refTypes is one key of a types-*.json file: llama-quantize's general.file_type and the
// type of every tensor, in the output file's order.
type refTypes struct {
	FileType uint32
	Names    []string
	Types    map[string]string
}

func loadRefTypes(t *testing.T, path string) map[string]refTypes {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	out := map[string]refTypes{}
	for key, v := range doc {
		var e struct {
			FileType uint32          `json:"general.file_type"`
			Tensors  json.RawMessage `json:"tensors"`
		}
		if err := json.Unmarshal(v, &e); err != nil {
			t.Fatal(err)
		}
		r := refTypes{FileType: e.FileType, Types: map[string]string{}}
		// The tensors object keeps the output file's order: read it token by token.
		dec := json.NewDecoder(strings.NewReader(string(e.Tensors)))
		if _, err := dec.Token(); err != nil {
			t.Fatal(err)
		}
		for dec.More() {
			k, err := dec.Token()
			if err != nil {
				t.Fatal(err)
			}
			var typ string
			if err := dec.Decode(&typ); err != nil {
				t.Fatal(err)
			}
			r.Names = append(r.Names, k.(string))
			r.Types[k.(string)] = typ
		}
		out[key] = r
	}
	return out
}

// mixCase is an input model: its tensors and hyperparameters.
type mixCase struct {
	json    string
	tensors []weft.TensorInfo
	params  arch.MixParams
}

func openInfos(t *testing.T, path string) ([]weft.TensorInfo, arch.MixParams) {
	t.Helper()
	c, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	infos := make([]weft.TensorInfo, len(c.Tensors))
	for i, x := range c.Tensors {
		infos[i] = x.TensorInfo
	}
	p, err := arch.MixParamsFromKV(c.GetKV)
	if err != nil {
		t.Fatal(err)
	}
	return infos, p
}

// synth16e256 is the 16-layer n_embd 256 model types-16l-e256.json was made from (not
// stored): the 8-layer input's layout (n_embd 256, n_ff 512, vocab 1024, 4 heads) with 16
// layers.
func synth16e256(infos8 []weft.TensorInfo, p8 arch.MixParams) ([]weft.TensorInfo, arch.MixParams) {
	var out []weft.TensorInfo
	for _, ti := range infos8 {
		l, _, ok := arch.Layer(ti.Name)
		switch {
		case !ok:
			out = append(out, ti)
		case l == 0:
			for k := 0; k < 16; k++ {
				c := ti.Clone()
				c.Name = arch.WithLayer(ti.Name, k)
				out = append(out, c)
			}
		}
	}
	p := p8
	p.NLayer = 16
	return out, p
}

// parseRefKey turns a types-*.json key ("Q4_K_M --tensor-type attn_q=q8_0 ...") into the
// file type and llama-quantize's options.
func parseRefKey(t *testing.T, key string) (arch.FileType, arch.MixOptions) {
	t.Helper()
	f := strings.Fields(key)
	ft, ok := arch.ParseMixFileType(f[0])
	if !ok {
		t.Fatalf("%q: unknown file type", key)
	}
	var o arch.MixOptions
	dt := func(s string) weft.DType {
		d, err := weft.ParseDType(s)
		if err != nil {
			t.Fatalf("%q: %v", key, err)
		}
		return d
	}
	for i := 1; i < len(f); i++ {
		switch f[i] {
		case "--pure":
			o.Pure = true
		case "--leave-output-tensor":
			o.LeaveOutput = true
		case "--output-tensor-type":
			i++
			o.OutputType = dt(f[i])
		case "--token-embedding-type":
			i++
			o.TokenEmbeddingType = dt(f[i])
		case "--tensor-type":
			i++
			p, ty, _ := strings.Cut(f[i], "=")
			o.TensorTypes = append(o.TensorTypes, arch.TensorTypeRule{Pattern: p, Type: dt(ty)})
		case "--imatrix":
			i++
			o.Imatrix = true
		default:
			t.Fatalf("%q: unknown option %s", key, f[i])
		}
	}
	return ft, o
}

// TestMixMatchesLlamaQuantize checks every type map llama-quantize recorded, for the three
// models and every file type and option run: each tensor's type, general.file_type, the
// output order, and which runs llama-quantize refuses without an importance matrix.
func TestMixMatchesLlamaQuantize(t *testing.T) {
	in8, p8 := openInfos(t, testshared.Path(t, "vectors/llama-quantize/input-8l-f32.gguf"))
	in16, p16 := openInfos(t, testshared.Path(t, "vectors/llama-quantize/input-16l-f32.gguf"))
	in16e, p16e := synth16e256(in8, p8)
	cases := []mixCase{
		{"types-8l.json", in8, p8},
		{"types-16l.json", in16, p16},
		{"types-16l-e256.json", in16e, p16e},
	}
	checked := 0
	for _, mc := range cases {
		ref := loadRefTypes(t, testshared.Path(t, "vectors/llama-quantize/"+mc.json))
		keys := make([]string, 0, len(ref))
		for k := range ref {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, key := range keys {
			want := ref[key]
			t.Run(mc.json+"/"+key, func(t *testing.T) {
				ft, o := parseRefKey(t, key)
				m, err := arch.Mix(ft, mc.tensors, mc.params, o)
				if err != nil {
					t.Fatal(err)
				}
				if uint32(m.FileType) != want.FileType {
					t.Errorf("general.file_type %d, llama-quantize %d", uint32(m.FileType), want.FileType)
				}
				if len(m.Types) != len(want.Types) {
					t.Errorf("%d tensors typed, llama-quantize %d", len(m.Types), len(want.Types))
				}
				for name, w := range want.Types {
					if got := m.Types[name]; got.String() != w {
						t.Errorf("%s: %v, llama-quantize %s", name, got, w)
					}
				}
				names := make([]string, len(mc.tensors))
				for i, ti := range mc.tensors {
					names[i] = ti.Name
				}
				arch.MixOrder(names)
				if strings.Join(names, ",") != strings.Join(want.Names, ",") {
					t.Errorf("order differs from llama-quantize's output:\n got %v\nwant %v", names, want.Names)
				}
				// Runs without an importance matrix succeeded: none may require one. The
				// imatrix runs record what would be refused without it.
				if !o.Imatrix && len(m.RequiresImatrix) > 0 {
					t.Errorf("requires an importance matrix (%v), but llama-quantize ran without one", m.RequiresImatrix)
				}
			})
			checked++
		}
	}
	if checked != 36+16+16 {
		t.Errorf("checked %d type maps, want 68", checked)
	}
}

// TestMixRefusesQ2KSWithoutImatrix checks the one file type llama-quantize refused without
// an importance matrix on every model: Q2_K_S, whose first offending tensor is
// blk.0.attn_k.weight as q2_K.
func TestMixRefusesQ2KSWithoutImatrix(t *testing.T) {
	in8, p8 := openInfos(t, testshared.Path(t, "vectors/llama-quantize/input-8l-f32.gguf"))
	in16, p16 := openInfos(t, testshared.Path(t, "vectors/llama-quantize/input-16l-f32.gguf"))
	in16e, p16e := synth16e256(in8, p8)
	ft, _ := arch.ParseMixFileType("Q2_K_S")
	for i, c := range []struct {
		in []weft.TensorInfo
		p  arch.MixParams
	}{{in8, p8}, {in16, p16}, {in16e, p16e}} {
		m, err := arch.Mix(ft, c.in, c.p, arch.MixOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(m.RequiresImatrix) == 0 {
			t.Fatalf("model %d: Q2_K_S requires no importance matrix", i)
		}
		first := m.RequiresImatrix[0]
		if i == 1 {
			// n_embd 128: attn_k falls back from Q2_K to Q4_0 and needs nothing; the
			// README quotes the message of the 256-wide runs.
			continue
		}
		if first.Name != "blk.0.attn_k.weight" || arch.GGMLTypeName(first.Type) != "q2_K" {
			t.Errorf("model %d: first tensor requiring an importance matrix %s as %s, llama-quantize: blk.0.attn_k.weight as q2_K", i, first.Name, arch.GGMLTypeName(first.Type))
		}
	}
	// The file types that need one are those choosing a lattice type other than IQ3_S for
	// some tensor (IQ3_S and IQ3_M use IQ3_S and K-quants only), and Q2_K_S.
	need := map[string]bool{"Q2_K_S": true, "IQ1_S": true, "IQ1_M": true, "IQ2_XXS": true, "IQ2_XS": true,
		"IQ2_S": true, "IQ2_M": true, "IQ3_XXS": true, "IQ3_XS": true}
	for _, f := range arch.MixFileTypes() {
		m, err := arch.Mix(f, in8, p8, arch.MixOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := len(m.RequiresImatrix) > 0, need[f.String()]; got != want {
			t.Errorf("%s: requires an importance matrix %v, want %v (%v)", f, got, want, m.RequiresImatrix)
		}
	}
}
