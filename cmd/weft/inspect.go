package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/arch"
	"github.com/weft-ml/weft/internal/text"
)

type inspectTensor struct {
	Name  string  `json:"name"`
	DType string  `json:"dtype"`
	Shape []int64 `json:"shape"`
	Bytes int64   `json:"bytes"`
	Shard int     `json:"shard,omitempty"`
}

type inspectTotal struct {
	Tensors    int   `json:"tensors"`
	Parameters int64 `json:"parameters"`
	Bytes      int64 `json:"bytes"`
}

type inspectReport struct {
	Path       string                  `json:"path"`
	Commit     string                  `json:"commit,omitempty"`
	Format     weft.Format             `json:"format"`
	Model      *arch.Summary           `json:"model,omitempty"`
	ShapeOrder string                  `json:"shape_order"`
	Files      []string                `json:"files"`
	Version    uint32                  `json:"gguf_version,omitempty"`
	Alignment  int64                   `json:"alignment,omitempty"`
	Metadata   map[string]string       `json:"metadata,omitempty"`
	KV         []inspectKV             `json:"kv,omitempty"`
	SideFiles  []string                `json:"side_files,omitempty"`
	HeaderHash string                  `json:"header_sha256"`
	Tensors    []inspectTensor         `json:"tensors,omitempty"`
	Totals     inspectTotal            `json:"totals"`
	ByDType    map[string]inspectTotal `json:"by_dtype"`
}

type inspectKV struct {
	Key   string `json:"key"`
	Type  string `json:"type"`
	Value any    `json:"value"`
}

func inspectCmd() *command {
	return &command{
		name:     "inspect",
		summary:  "show a checkpoint's format, metadata, tensors and totals (reads headers only)",
		synopsis: []string{"inspect PATH [--json] [--tensors=false] [--full] [--gguf-order]"},
		about: `Shows the format; the model (architecture, layers, hidden size, attention and key-value
heads, intermediate size, vocabulary, context length, experts, whether the output head is
tied, and torch_dtype or the GGUF file type), from config.json or the GGUF key-values, and
from the tensors where those are silent; the metadata (safetensors __metadata__ or GGUF
key-values, long arrays summarised); a table of tensors (name, dtype, shape, bytes) and
totals by dtype. PATH is a .safetensors, .gguf (the first part of a split), .bin/.pt file,
or a Hugging Face directory. Only headers (and config.json) are read.

Shapes are printed in row-major order, outermost dimension first, as PyTorch and
safetensors write them ([vocab, hidden] for an embedding); GGUF files store them the other
way round (ne[0], the innermost, first), as llama.cpp and gguf-py print them.`,
		examples: []example{
			{line: "weft inspect base --tensors=false"},
			{line: "weft inspect model.gguf --gguf-order"},
			{line: "weft inspect pytorch_model.bin --json"},
			{line: "weft inspect hf://Qwen/Qwen2.5-0.5B --tensors=false   # reads the headers by range requests"},
		},
		newOptions: func() options { return &inspectOptions{} },
	}
}

// inspectOptions are weft inspect's options.
type inspectOptions struct {
	asJSON, showTensors, full, ggufOrder bool
	inp                                  inputFlags
}

func (o *inspectOptions) addFlags(fs *flagSet) {
	fs.BoolVar(&o.asJSON, "json", false, "machine-readable output")
	fs.BoolVar(&o.showTensors, "tensors", true, "print the tensor table (--tensors=false omits it)")
	fs.BoolVar(&o.full, "full", false, "print arrays in full")
	fs.BoolVar(&o.ggufOrder, "gguf-order", false, "print shapes in GGUF order (innermost first, [hidden, vocab])")
	o.inp.add(fs)
}

func (o *inspectOptions) validate(e *env, pos []string) error {
	if len(pos) != 1 {
		return usagef("want one PATH, got %d arguments", len(pos))
	}
	return nil
}

func (o *inspectOptions) run(ctx context.Context, e *env, pos []string) error {
	o.inp.bind(ctx, e)
	c, err := o.inp.open(pos[0])
	if err != nil {
		return err
	}
	defer c.Close()
	r := inspectReport{Path: c.Path, Commit: c.Commit, Format: c.Format, Files: c.Files, Version: c.GGUFVersion, Metadata: c.Metadata, HeaderHash: c.HeaderHash, ByDType: map[string]inspectTotal{}}
	if c.Format == weft.GGUF {
		r.Alignment = c.Alignment
	}
	if r.Model, err = arch.Summarize(c); err != nil {
		return err
	}
	r.ShapeOrder = shapeOrderRowMajor
	if o.ggufOrder {
		r.ShapeOrder = shapeOrderGGUF
	}
	for _, kv := range c.KV {
		r.KV = append(r.KV, inspectKV{Key: kv.Key, Type: kvType(kv.Value), Value: summarise(kv.Value, o.full, o.asJSON)})
	}
	for _, s := range c.SideFiles {
		r.SideFiles = append(r.SideFiles, s.Name)
	}
	if o.showTensors {
		for _, t := range c.Tensors {
			n, _ := t.Size()
			shape := nonNil(t.Shape)
			if o.ggufOrder {
				shape = reversed(shape)
			}
			r.Tensors = append(r.Tensors, inspectTensor{Name: t.Name, DType: t.DType.String(), Shape: shape, Bytes: n, Shard: t.Shard})
		}
	}
	tot := c.Totals()
	r.Totals = inspectTotal{tot.Tensors, tot.Parameters, tot.Bytes}
	for d, x := range tot.ByDType {
		r.ByDType[d.String()] = inspectTotal{x.Tensors, x.Parameters, x.Bytes}
	}
	if o.asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	w := e.stdout
	fmt.Fprintf(w, "path:    %s\n", r.Path)
	if r.Commit != "" {
		fmt.Fprintf(w, "commit:  %s\n", r.Commit)
	}
	fmt.Fprintf(w, "format:  %s", r.Format)
	if r.Format == weft.GGUF {
		fmt.Fprintf(w, " v%d (alignment %d)", r.Version, r.Alignment)
	}
	fmt.Fprintf(w, "\nfiles:   %d\n", len(r.Files))
	if len(r.Files) > 1 {
		for _, f := range r.Files {
			fmt.Fprintf(w, "  %s\n", f)
		}
	}
	if len(r.SideFiles) > 0 {
		fmt.Fprintf(w, "side files: %s\n", strings.Join(r.SideFiles, ", "))
	}
	printModel(w, r.Model)
	if len(r.Metadata) > 0 {
		fmt.Fprintf(w, "\nmetadata (%d):\n", len(r.Metadata))
		keys := make([]string, 0, len(r.Metadata))
		for k := range r.Metadata {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(w, "  %-40s %s\n", safe(k), safe(clip(r.Metadata[k], 120, o.full)))
		}
	}
	if len(r.KV) > 0 {
		fmt.Fprintf(w, "\nkey-values (%d):\n", len(r.KV))
		for _, kv := range r.KV {
			fmt.Fprintf(w, "  %-44s %-10s %v\n", safe(kv.Key), kv.Type, kv.Value)
		}
	}
	if o.showTensors {
		fmt.Fprintf(w, "\ntensors (%d), shapes %s:\n", len(r.Tensors), r.ShapeOrder)
		fmt.Fprintf(w, "  %-52s %-7s %-18s %12s\n", "name", "dtype", "shape", "bytes")
		for _, t := range r.Tensors {
			fmt.Fprintf(w, "  %-52s %-7s %-18s %12d\n", safe(t.Name), t.DType, shapeString(t.Shape), t.Bytes)
		}
	}
	fmt.Fprintf(w, "\ntotals: %d tensors, %d parameters, %d bytes (%s)\n", r.Totals.Tensors, r.Totals.Parameters, r.Totals.Bytes, text.Bytes(r.Totals.Bytes))
	for _, d := range tot.SortedDTypes() {
		x := tot.ByDType[d]
		fmt.Fprintf(w, "  %-8s %5d tensors %14d parameters %14d bytes\n", d, x.Tensors, x.Parameters, x.Bytes)
	}
	return nil
}

func nonNil(s []int64) []int64 {
	if s == nil {
		return []int64{}
	}
	return s
}

func clip(s string, n int, full bool) string {
	if full || len(s) <= n {
		return s
	}
	return s[:n] + fmt.Sprintf("... (%d bytes)", len(s))
}

// kvType names the GGUF type of a KV value.
func kvType(v any) string {
	rv := reflect.ValueOf(v)
	if rv.Kind() == reflect.Slice {
		return "[]" + ggufTypeName(rv.Type().Elem().Kind())
	}
	return ggufTypeName(rv.Kind())
}

func ggufTypeName(k reflect.Kind) string {
	switch k {
	case reflect.Uint8:
		return "u8"
	case reflect.Int8:
		return "i8"
	case reflect.Uint16:
		return "u16"
	case reflect.Int16:
		return "i16"
	case reflect.Uint32:
		return "u32"
	case reflect.Int32:
		return "i32"
	case reflect.Uint64:
		return "u64"
	case reflect.Int64:
		return "i64"
	case reflect.Float32:
		return "f32"
	case reflect.Float64:
		return "f64"
	case reflect.Bool:
		return "bool"
	case reflect.String:
		return "str"
	}
	return k.String()
}

// safe returns s as it is, or quoted when it holds control characters or invalid UTF-8, so
// that names and values from a file cannot drive the terminal.
func safe(s string) string {
	if !utf8.ValidString(s) {
		return strconv.Quote(s)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return strconv.Quote(s)
		}
	}
	return s
}

// summarise shortens long arrays and strings for display.
func summarise(v any, full, asJSON bool) any {
	rv := reflect.ValueOf(v)
	if rv.Kind() == reflect.String {
		s := rv.String()
		if asJSON {
			return s
		}
		return fmt.Sprintf("%q", clip(s, 100, full))
	}
	if rv.Kind() != reflect.Slice || (!asJSON && rv.Type().Elem().Kind() == reflect.String) {
		if ss, ok := v.([]string); ok && !asJSON {
			n := len(ss)
			if !full && n > 8 {
				n = 4
			}
			parts := make([]string, n)
			for i := range parts {
				parts[i] = fmt.Sprintf("%q", clip(ss[i], 20, full))
			}
			if n < len(ss) {
				return fmt.Sprintf("[%s, ... %d items]", strings.Join(parts, ", "), len(ss))
			}
			return "[" + strings.Join(parts, ", ") + "]"
		}
	}
	if rv.Kind() != reflect.Slice || full || rv.Len() <= 8 {
		return v
	}
	head := make([]any, 0, 4)
	for i := 0; i < 4; i++ {
		head = append(head, rv.Index(i).Interface())
	}
	if asJSON {
		return map[string]any{"count": rv.Len(), "first": head}
	}
	parts := make([]string, len(head))
	for i, h := range head {
		if s, ok := h.(string); ok {
			parts[i] = fmt.Sprintf("%q", clip(s, 20, false))
		} else {
			parts[i] = fmt.Sprint(h)
		}
	}
	return fmt.Sprintf("[%s, ... %d items]", strings.Join(parts, ", "), rv.Len())
}

// The shape orders inspect prints in.
const (
	shapeOrderRowMajor = "in row-major order (outermost first, as PyTorch and safetensors write them)"
	shapeOrderGGUF     = "in GGUF order (innermost first, ne[0] first, as llama.cpp writes them)"
)

// reversed returns s in reverse order.
func reversed(s []int64) []int64 {
	out := make([]int64, len(s))
	for i, d := range s {
		out[len(s)-1-i] = d
	}
	return out
}

// printModel prints the model summary, one fact a line.
func printModel(w io.Writer, m *arch.Summary) {
	if m == nil || (m.Architecture == "" && len(m.Fields) == 0) {
		return
	}
	fmt.Fprintf(w, "\nmodel (from %s):\n", m.Source)
	if m.Architecture != "" {
		fmt.Fprintf(w, "  %-20s %s\n", "architecture", safe(m.Architecture))
	}
	for _, f := range m.Fields {
		v := f.String()
		if b, ok := f.Value.(bool); ok {
			v = map[bool]string{true: "yes", false: "no"}[b]
		}
		fmt.Fprintf(w, "  %-20s %s\n", f.Label, safe(v))
	}
}
