package ops

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/arch"
	"github.com/weft-ml/weft/codec"
	"github.com/weft-ml/weft/quant"
	"github.com/weft-ml/weft/sidefile"
)

// TypeRule gives the tensors whose names match Pattern (a glob or a group, see Pattern) the
// output type DType. In records it reads "PATTERN=TYPE".
type TypeRule struct {
	Pattern string
	DType   weft.DType
}

// ParseTypeRule parses "PATTERN=TYPE" (for example "output.weight=q8_0" or "norms=f32"):
// the pattern ends at the last '=', and the type is any name ParseDType takes.
func ParseTypeRule(s string) (TypeRule, error) {
	i := strings.LastIndexByte(s, '=')
	if i <= 0 || i == len(s)-1 {
		return TypeRule{}, fmt.Errorf("type rule %q: want PATTERN=TYPE", s)
	}
	dt, err := weft.ParseDType(s[i+1:])
	if err != nil {
		return TypeRule{}, fmt.Errorf("type rule %q: %v", s, err)
	}
	if _, err := CompilePattern(s[:i]); err != nil {
		return TypeRule{}, err
	}
	return TypeRule{Pattern: s[:i], DType: dt}, nil
}

// String returns the rule as "PATTERN=TYPE".
func (r TypeRule) String() string { return r.Pattern + "=" + r.DType.String() }

// MarshalText writes the rule as "PATTERN=TYPE".
func (r TypeRule) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText parses "PATTERN=TYPE" (see ParseTypeRule).
func (r *TypeRule) UnmarshalText(b []byte) error {
	v, err := ParseTypeRule(string(b))
	if err != nil {
		return err
	}
	*r = v
	return nil
}

// Types is what is asked of an op's output types; every op's parameters embed it, so that
// every command takes the same --dtype and --type-for and records them the same way.
//
// A tensor's type comes from, in order: the first rule of TypeFor that matches its name;
// a TypeSource given to NewTyper (a quantization mixture choosing by role and layer); DType;
// otherwise the type the op gives it (the input's). Integer and bool tensors always keep
// their type. For GGUF outputs, DType applies to the weights llama-quantize quantizes
// (see arch.GGUFQuantizable) when it is a quantized type, and to tensors of two or more
// dimensions when it is a float type; 1-D tensors become F32, as llama.cpp's converters
// keep norms and biases, unless a rule names them.
type Types struct {
	// DType, when valid, is the type of every floating-point or quantized tensor.
	DType weft.DType `json:"dtype,omitempty"`
	// TypeFor overrides DType per tensor; the first matching rule wins. A rule that matches
	// no tensor is an error.
	TypeFor []TypeRule `json:"type_for,omitempty"`
	// Quant, for GGUF outputs, asks for what llama-quantize writes: a quantization mixture
	// as the source of the types between TypeFor and DType, an importance matrix, and
	// llama-quantize's key-values, order and pruning (see Quant). Its options are flags of
	// their own on the command line (--pure, --imatrix, ...), and flat keys in recipes.
	Quant *Quant `json:"quant,omitempty" flag:",inline"`
}

// OutputTypes returns t; op parameters get it by embedding Types.
func (t Types) OutputTypes() Types { return t }

// IsZero reports whether t asks no types (every tensor keeps the type the op gives it; the
// options of Quant other than a mixture do not change types).
func (t Types) IsZero() bool {
	return t.DType == weft.Invalid && len(t.TypeFor) == 0 && (t.Quant == nil || t.Quant.FileType == "")
}

// TypeSource chooses the types of some tensors: a quantization mixture (Q4_K_M and the
// like) that picks a type by a tensor's role and layer. It sits between the explicit rules
// and the default type.
type TypeSource interface {
	// TypeOf returns the type the source gives a tensor, or false to leave it to the
	// default. info is the tensor as the op makes it (name, shape and natural type).
	TypeOf(info weft.TensorInfo) (weft.DType, bool)
	// FileType is what general.file_type says of a GGUF file the source typed.
	FileType() arch.FileType
}

// ErrUnmatchedRule is wrapped by the error for a type rule that matches no tensor.
var ErrUnmatchedRule = errors.New("matches no tensor")

// Typer resolves the output type of each tensor of one output. An op asks it (Of) for the
// type of every tensor it computes, so that computed values are rounded once, straight to
// the output type; Finish then converts the tensors the op did not ask about and keeps the
// file's records of its types (general.file_type, config.json's torch_dtype) true.
type Typer struct {
	spec    Types
	target  weft.Format
	source  TypeSource
	pats    []*Pattern
	used    []bool
	asked   map[string]weft.DType
	actions map[string]string
	notes   []string
	changed bool
	requant bool

	// weights gives a tensor's importance weights (nil: none); weightsOf holds those of
	// the tensors quantized with them, which the op computes in F32 and Finish quantizes.
	weights   func(weft.TensorInfo) ([]float32, error)
	weightsOf map[string][]float32
	// Counts of quantized tensors, and of those with and without weights.
	quantized, weighted, unweighted int
	unweightedNames                 []string
}

// RequestError is a requested output type that cannot be written: the default type (Rule
// "") or a type rule's. The CLI names the flag it came from.
type RequestError struct {
	// Rule is the type rule as written ("PATTERN=TYPE"), or "" for the default type.
	Rule string
	Err  error
}

// Error describes the request and why it is refused.
func (e *RequestError) Error() string {
	if e.Rule == "" {
		return "output type: " + e.Err.Error()
	}
	return fmt.Sprintf("type rule %q: %v", e.Rule, e.Err)
}

// Unwrap returns the reason.
func (e *RequestError) Unwrap() error { return e.Err }

// checkRequested refuses a requested type that the output format cannot hold, or that
// llama.cpp cannot use as weights.
func checkRequested(dt weft.DType, target weft.Format) error {
	if !dt.Valid() {
		return fmt.Errorf("invalid type")
	}
	if !dt.Float() && !dt.Quantized() {
		return fmt.Errorf("%v is not a floating-point or quantized type", dt)
	}
	switch target {
	case weft.GGUF:
		if why := arch.NotAWeightType(dt); why != "" {
			return fmt.Errorf("llama.cpp cannot use %v weights: %s", dt, why)
		}
	default:
		if _, ok := dt.Safetensors(); !ok {
			return fmt.Errorf("safetensors has no %v type; quantized types are for .gguf outputs", dt)
		}
	}
	if !codec.CanEncode(dt) && !quant.RequiresWeights(dt) {
		return fmt.Errorf("weft cannot encode %v (no quantizer for it)", dt)
	}
	return nil
}

// NewTyper checks spec for an output in format target (weft.GGUF, or weft.Safetensors for
// safetensors files and Hugging Face directories) and returns its resolver. source may be
// nil.
func NewTyper(spec Types, target weft.Format, source TypeSource) (*Typer, error) {
	if target != weft.GGUF {
		target = weft.Safetensors
	}
	ty := &Typer{spec: spec, target: target, source: source, used: make([]bool, len(spec.TypeFor)),
		asked: map[string]weft.DType{}, actions: map[string]string{}}
	if spec.DType != weft.Invalid {
		if err := checkRequested(spec.DType, target); err != nil {
			return nil, &RequestError{Err: err}
		}
	}
	for _, r := range spec.TypeFor {
		p, err := CompilePattern(r.Pattern)
		if err != nil {
			return nil, err
		}
		if err := checkRequested(r.DType, target); err != nil {
			return nil, &RequestError{Rule: r.String(), Err: err}
		}
		ty.pats = append(ty.pats, p)
	}
	return ty, nil
}

// Target returns the output format the typer resolves for.
func (ty *Typer) Target() weft.Format { return ty.target }

// Of returns the output type of a tensor the op makes as info (its name, shape and the type
// the op would give it). It fails when the output format cannot hold the tensor's type.
// A nil Typer keeps every type.
func (ty *Typer) Of(info weft.TensorInfo) (weft.DType, error) {
	if ty == nil {
		return info.DType, nil
	}
	natural := info.DType
	target, why := weft.Invalid, ""
	explicit := false
	for k, p := range ty.pats {
		if p.Match(info.Name) {
			ty.used[k] = true
			target, why, explicit = ty.spec.TypeFor[k].DType, "type rule "+ty.spec.TypeFor[k].String(), true
			break
		}
	}
	floatLike := natural.Float() || natural.Quantized()
	if !floatLike {
		target = weft.Invalid // integers and bools keep their type
	}
	if floatLike && !explicit && ty.source != nil {
		if dt, ok := ty.source.TypeOf(info); ok {
			target, why = dt, "mixture"
		}
	}
	if floatLike && target == weft.Invalid && ty.spec.DType != weft.Invalid {
		d := ty.spec.DType
		switch {
		case ty.target != weft.GGUF:
			target = d
		case len(info.Shape) < 2:
			target = weft.F32
		case d.Quantized() && !arch.Quantizable(info, false):
		default:
			target = d
		}
		why = "output type " + d.String()
	}
	if target == weft.Invalid {
		target = natural
	}
	if target.Quantized() && target != natural && info.RowLen()%target.BlockSize() != 0 {
		fb, err := arch.FallbackFor(target, info.RowLen())
		if err != nil || !codec.CanEncode(fb) {
			fb = weft.F16
		}
		ty.notes = append(ty.notes, fmt.Sprintf("tensor %q: rows of %d are not a multiple of the %v block size %d; using %v, as llama-quantize does", info.Name, info.RowLen(), target, target.BlockSize(), fb))
		target = fb
	}
	// Importance weights, when an importance matrix is given, are looked up first: a type
	// whose quantizer needs them (quant.RequiresWeights) can be made only with them.
	var w []float32
	lookedUp := false
	if ty.weights != nil && target.Quantized() && target != natural && quant.UsesWeights(target) {
		var err error
		if w, err = ty.weights(info); err != nil {
			return weft.Invalid, err
		}
		lookedUp = true
	}
	if err := ty.holds(info, target, why, w != nil); err != nil {
		return weft.Invalid, err
	}
	ty.asked[info.Name] = target
	if target != natural && natural.Quantized() && target.Quantized() && !ty.requant {
		ty.requant = true
		ty.notes = append(ty.notes, "requantizing already quantized tensors loses quality: each rounding adds error; start from the F16/BF16/F32 original when you have it")
	}
	if target != natural {
		ty.actions[info.Name] = fmt.Sprintf("%v -> %v", natural, target)
		ty.changed = true
	}
	if ty.weights != nil && target.Quantized() && target != natural {
		ty.quantized++
		if lookedUp {
			if w != nil {
				// The op computes the values in F32 (exactly what quantizing them would
				// round them to first); Finish quantizes them with the weights.
				ty.weightsOf[info.Name] = w
				ty.weighted++
				ty.actions[info.Name] += ", importance weights"
				return weft.F32, nil
			}
			ty.unweighted++
			if len(ty.unweightedNames) < 4 {
				ty.unweightedNames = append(ty.unweightedNames, info.Name)
			} else if len(ty.unweightedNames) == 4 {
				ty.unweightedNames = append(ty.unweightedNames, "...")
			}
		}
	}
	return target, nil
}

// holds checks that the output format can hold a tensor of type dt and that weft can make
// it from the op's values.
func (ty *Typer) holds(info weft.TensorInfo, dt weft.DType, why string, weighted bool) error {
	switch ty.target {
	case weft.GGUF:
		if _, ok := dt.GGML(); !ok {
			return fmt.Errorf("tensor %q is %v, which GGUF cannot hold: give it a float or quantized output type", info.Name, dt)
		}
	default:
		if _, ok := dt.Safetensors(); !ok {
			return fmt.Errorf("tensor %q is %v, which safetensors cannot hold: give an output type (f32, f16 or bf16) for it, or write a .gguf file", info.Name, dt)
		}
	}
	if dt != info.DType {
		if !codec.CanDecode(info.DType) {
			return fmt.Errorf("tensor %q: weft cannot decode %v to make it %v (%s)", info.Name, info.DType, dt, why)
		}
		switch {
		case codec.CanEncode(dt), weighted && quant.RequiresWeights(dt):
		case quant.RequiresWeights(dt) && ty.weights == nil:
			return fmt.Errorf("tensor %q: %v (%s) needs an importance matrix: ggml's quantizer for it requires importance weights", info.Name, dt, why)
		case quant.RequiresWeights(dt):
			return fmt.Errorf("tensor %q: %v (%s) needs importance weights, and the importance matrix has no entry for this tensor", info.Name, dt, why)
		default:
			return fmt.Errorf("tensor %q: weft cannot encode %v (%s)", info.Name, dt, why)
		}
		c := info.Clone()
		c.DType = dt
		if _, err := c.Size(); err != nil {
			return err
		}
	}
	return nil
}

// Action returns what the typer does to a tensor ("F16 -> Q8_0"), or "".
func (ty *Typer) Action(name string) string {
	if ty == nil {
		return ""
	}
	return ty.actions[name]
}

// Notes returns what the user should know: fallback types for rows that do not fit a
// quantized type's blocks.
func (ty *Typer) Notes() []string {
	if ty == nil {
		return nil
	}
	return ty.notes
}

// Finish types the tensors of out the op did not ask about (a raw tensor whose type
// changes is cast, rounding once), fails on a rule that matched no tensor, and updates the
// records of the output's types: general.file_type for GGUF, always set and consistent with
// the tensors (see FileTypeFor), and config.json's torch_dtype (and dtype where present)
// for Hugging Face outputs whose types changed.
func (ty *Typer) Finish(out *weft.Checkpoint) error {
	cast := map[*weft.Tensor]*weft.Tensor{} // tensors cast, for the ties
	orig := map[string]*weft.Tensor{}
	for _, t := range out.Tensors {
		orig[t.Name] = t
	}
	for i, t := range out.Tensors {
		want, ok := ty.asked[t.Name]
		if !ok {
			if _, err := ty.Of(t.TensorInfo); err != nil {
				return err
			}
			want = ty.asked[t.Name]
		}
		if want == t.DType {
			continue
		}
		if u := orig[t.TiedTo]; u != nil && weft.Tied(t, u) && cast[u] != nil && cast[u].DType == want {
			// Tied, and cast alike: still one tensor under two names.
			out.Tensors[i] = Alias(cast[u], t)
			continue
		}
		c, err := CastWeighted(t, want, ty.weightsOf[t.Name])
		if err != nil {
			return err
		}
		c.Shard = t.Shard
		cast[t] = c
		out.Tensors[i] = c
	}
	var unused []string
	for k, u := range ty.used {
		if !u {
			unused = append(unused, fmt.Sprintf("%q", ty.spec.TypeFor[k].String()))
		}
	}
	if len(unused) > 0 {
		return weft.Optionf("type_for", "rule %s %w (globs match whole names, e.g. \"*self_attn*\"; groups are %s)", strings.Join(unused, ", "), ErrUnmatchedRule, GroupNames())
	}
	if ty.target == weft.GGUF {
		ft := ty.FileTypeFor(out)
		v, had := out.GetKV(arch.KeyFileType)
		nv, err := SameIntType(v, int64(ft))
		if err != nil {
			nv = uint32(ft)
		}
		if !had || v != nv {
			out.SetKV(arch.KeyFileType, nv)
		}
		return nil
	}
	if ty.changed {
		return setTorchDType(out)
	}
	return nil
}

// FileTypeFor returns the general.file_type of out as the typer made it, as llama-quantize
// derives it: the mixture's when a TypeSource typed it; otherwise the file type of the
// dominant weight type (the type holding the most parameters among floating-point and
// quantized tensors of two or more dimensions), keeping out's own value when nothing asked
// for another type and its main type is that dominant type (a Q4_K_S file stays Q4_K_S).
func (ty *Typer) FileTypeFor(out *weft.Checkpoint) arch.FileType {
	if ty.source != nil {
		return ty.source.FileType()
	}
	dom := DominantType(out.Tensors, true)
	if ty.spec.IsZero() {
		if v, ok := out.GetKV(arch.KeyFileType); ok {
			if n, ok := KVInt(v); ok && n >= 0 && arch.FileType(n).Describes(dom) {
				return arch.FileType(n)
			}
		}
	}
	if ft, ok := arch.FileTypeOf(dom); ok {
		return ft
	}
	return 0 // no float weights: "all F32"
}

// DominantType returns the type holding the most parameters among ts' floating-point and
// quantized tensors (of two or more dimensions when weights is set); ties go to the type
// listed first in weft.AllDTypes; weft.F32 when there are none.
func DominantType(ts []*weft.Tensor, weights bool) weft.DType {
	count := map[weft.DType]int64{}
	for _, t := range ts {
		if (t.DType.Float() || t.DType.Quantized()) && (!weights || len(t.Shape) >= 2) {
			n, _ := t.NumElements()
			count[t.DType] += n
		}
	}
	best, bn := weft.F32, int64(-1)
	for _, d := range weft.AllDTypes() {
		if n, ok := count[d]; ok && n > bn {
			best, bn = d, n
		}
	}
	return best
}

// setTorchDType sets config.json's torch_dtype (and dtype, where present), at the top level
// and in the nested language-model configs that state one, to the name of the output's
// dominant floating-point type.
func setTorchDType(out *weft.Checkpoint) error {
	name, ok := arch.TorchDTypeName(DominantType(out.Tensors, false))
	if !ok {
		return nil
	}
	_, err := sidefile.EditJSON(out, "config.json", func(d *sidefile.Doc) error {
		if err := d.Set(name, arch.ConfigTorchDType); err != nil {
			return err
		}
		if d.Has(arch.ConfigDType) {
			if err := d.Set(name, arch.ConfigDType); err != nil {
				return err
			}
		}
		for _, nk := range arch.NestedConfigKeys {
			for _, k := range []string{arch.ConfigTorchDType, arch.ConfigDType} {
				if raw, ok := d.Get(nk, k); ok && len(raw) > 0 && raw[0] == '"' {
					if err := d.Set(name, nk, k); err != nil {
						return err
					}
				}
			}
		}
		return nil
	})
	return err
}

// GroupNames lists the tensor groups a pattern may name (see arch.Groups).
func GroupNames() string {
	g := make([]string, 0, len(arch.Groups))
	for k := range arch.Groups {
		g = append(g, k)
	}
	sort.Strings(g)
	return strings.Join(g, ", ")
}
