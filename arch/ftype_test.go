package arch

import (
	"strings"
	"testing"

	"github.com/weft-ml/weft"
)

// TestFileTypeEnum checks the table against llama.cpp's llama_ftype enum (include/llama.h),
// value by value, and llama-quant.cpp's default type of each mixture.
func TestFileTypeEnum(t *testing.T) {
	llamaH := map[string]uint32{
		"ALL_F32": 0, "MOSTLY_F16": 1, "MOSTLY_Q4_0": 2, "MOSTLY_Q4_1": 3, "MOSTLY_Q8_0": 7,
		"MOSTLY_Q5_0": 8, "MOSTLY_Q5_1": 9, "MOSTLY_Q2_K": 10, "MOSTLY_Q3_K_S": 11, "MOSTLY_Q3_K_M": 12,
		"MOSTLY_Q3_K_L": 13, "MOSTLY_Q4_K_S": 14, "MOSTLY_Q4_K_M": 15, "MOSTLY_Q5_K_S": 16,
		"MOSTLY_Q5_K_M": 17, "MOSTLY_Q6_K": 18, "MOSTLY_IQ2_XXS": 19, "MOSTLY_IQ2_XS": 20,
		"MOSTLY_Q2_K_S": 21, "MOSTLY_IQ3_XS": 22, "MOSTLY_IQ3_XXS": 23, "MOSTLY_IQ1_S": 24,
		"MOSTLY_IQ4_NL": 25, "MOSTLY_IQ3_S": 26, "MOSTLY_IQ3_M": 27, "MOSTLY_IQ2_S": 28,
		"MOSTLY_IQ2_M": 29, "MOSTLY_IQ4_XS": 30, "MOSTLY_IQ1_M": 31, "MOSTLY_BF16": 32,
		"MOSTLY_TQ1_0": 36, "MOSTLY_TQ2_0": 37, "MOSTLY_MXFP4_MOE": 38,
	}
	if len(fileTypes) != len(llamaH) {
		t.Fatalf("%d rows, llama.h has %d values weft can name", len(fileTypes), len(llamaH))
	}
	for name, id := range llamaH {
		short := strings.TrimPrefix(strings.TrimPrefix(name, "MOSTLY_"), "ALL_")
		ft, ok := ParseFileType(short)
		if !ok || uint32(ft) != id || ft.String() != short || !ft.Known() {
			t.Errorf("%s: ParseFileType(%q) = %d %v, want %d", name, short, ft, ok, id)
		}
	}
	main := map[string]weft.DType{"Q3_K_L": weft.Q3_K, "Q4_K_S": weft.Q4_K, "Q2_K_S": weft.Q2_K, "IQ3_XS": weft.IQ3_S,
		"IQ3_M": weft.IQ3_S, "IQ2_S": weft.IQ2_XS, "IQ2_M": weft.IQ2_S, "MXFP4_MOE": weft.MXFP4, "F32": weft.F32}
	for name, dt := range main {
		if ft, _ := ParseFileType(name); ft.MainType() != dt {
			t.Errorf("%s: main type %v, want %v", name, ft.MainType(), dt)
		}
	}
	if FileType(4).Known() || FileType(33).Known() || FileType(4).MainType() != weft.Invalid {
		t.Error("removed llama_ftype values are known")
	}
}

// TestPlainFileTypes: every GGUF weight type has a file type whose main type is itself,
// as llama_model_loader guesses it from the dominant type.
func TestPlainFileTypes(t *testing.T) {
	for _, d := range weft.AllDTypes() {
		ft, ok := FileTypeOf(d)
		switch {
		case NotAWeightType(d) != "":
			if ok {
				t.Errorf("%v is not a weight type but has file type %v", d, ft)
			}
		case !ok:
			t.Errorf("%v: no file type", d)
		case !ft.Describes(d):
			t.Errorf("%v: file type %v (main type %v) does not describe it", d, ft, ft.MainType())
		}
	}
	for _, d := range []weft.DType{weft.Q8_1, weft.Q8_K, weft.F64, weft.I32, weft.F8_E4M3, weft.Bool} {
		if NotAWeightType(d) == "" {
			t.Errorf("%v accepted as a weight type", d)
		}
	}
	if !strings.Contains(NotAWeightType(weft.Q8_K), "activation") || !strings.Contains(NotAWeightType(weft.Q8_1), "activation") {
		t.Error("the activation types are not explained")
	}
}

func TestGGUFQuantizable(t *testing.T) {
	for name, want := range map[string]bool{
		"blk.0.attn_q.weight": true, "token_embd.weight": true, "output.weight": true,
		"blk.0.attn_norm.weight": false, "blk.0.ffn_gate_inp.weight": false, "blk.0.ssm_conv1d.weight": false,
		"position_embd.weight": false, "blk.0.attn_q.bias": false,
	} {
		if got := GGUFQuantizable(name, 2); got != want {
			t.Errorf("%s: %v", name, got)
		}
	}
	if GGUFQuantizable("blk.0.attn_q.weight", 1) {
		t.Error("a 1-D tensor is quantizable")
	}
}

func TestFindLayerStack(t *testing.T) {
	names := []string{"model.embed_tokens.weight", "model.layers.0.a.weight", "model.layers.1.a.weight", "vision.blocks.0.x.weight", "model.norm.weight"}
	if _, err := FindLayerStack(names, -1); err == nil || !strings.Contains(err.Error(), "several layer stacks") {
		t.Fatalf("ambiguous stacks: %v", err)
	}
	st, err := FindLayerStack(names, 2)
	if err != nil || st.Prefix != "model.layers." || st.Layers != 2 || st.LayerOf[2] != 1 || st.LayerOf[3] != -1 {
		t.Fatalf("%+v %v", st, err)
	}
	if _, err := FindLayerStack([]string{"blk.0.a", "blk.2.a"}, -1); err == nil || !strings.Contains(err.Error(), "contiguously") {
		t.Fatalf("gap: %v", err)
	}
}
