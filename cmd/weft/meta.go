package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"unicode/utf8"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/ops/meta"
	"github.com/weft-ml/weft/remote"
)

// metaSetFileMax bounds a file read by --set-file.
const metaSetFileMax = 64 << 20

// editFlag collects the edit flags in command-line order.
type editFlag struct {
	kind  string
	edits *[]rawEdit
}

type rawEdit struct{ kind, arg string }

func (f editFlag) String() string { return "" }
func (f editFlag) Set(v string) error {
	*f.edits = append(*f.edits, rawEdit{f.kind, v})
	return nil
}

func metaCmd() *command {
	return &command{
		name:     "meta",
		summary:  "set, delete and rename GGUF key-values and safetensors metadata",
		synopsis: []string{"meta IN [--set KEY=VALUE ...] [--set-file KEY=FILE ...] [--delete KEY ...]\n                 [--rename OLD=NEW ...] (-o OUT | --in-place) [--dry-run] [--force]"},
		about: `Edits the metadata of IN, a GGUF file or a safetensors file or directory, and leaves its
tensors as they are. Edits apply in the order given. Without edits, lists the metadata.

With -o the edited checkpoint is written to OUT: the tensor bytes are copied as they are,
through the normal write path (a temporary file renamed into place when complete; --force,
--threads, --split-max-size apply); a split GGUF stays split part for part unless
--split-max-size is given.

Refused: the split.* keys (weft writes them), general.alignment in place,
general.quantization_version and general.file_type (they describe the tensors),
deleting or renaming general.architecture, and a safetensors format entry transformers
would refuse. weft meta records no provenance: the edit is the metadata.`,
		examples: []example{
			{line: "weft meta model.gguf"},
			{line: "weft meta model.gguf --set general.name=str:Blend -o named.gguf"},
			{line: "weft meta model.gguf --set-file tokenizer.chat_template=template.jinja -o chat-template.gguf"},
			{line: "weft meta model.gguf --set llama.context_length=u32:4096 --in-place"},
			{line: "weft meta model.safetensors --set stage=dpo --in-place"},
			{line: "weft meta model.safetensors --rename stage=phase --set note=tuned -o renamed.safetensors"},
		},
		newOptions: func() options { return &metaOptions{} },
	}
}

// metaOptions are weft meta's options.
type metaOptions struct {
	raw     []rawEdit
	inPlace bool
	of      outFlags
	inp     inputFlags
}

func (o *metaOptions) addFlags(fs *flagSet) {
	fs.Var(editFlag{"set", &o.raw}, "set", "`KEY=VALUE`: in a GGUF, VALUE is TYPE:VALUE with a GGUF type:\nu8 i8 u16 i16 u32 i32 u64 i64 (decimal or 0x hex), f32 f64, bool (true, false), str (the rest of the argument, as it is), arr[T] (T one of those: arr[i32]:1,2,3, or a JSON array: arr[str]:[\"a,b\",\"c\"]; arr[T]: alone is the empty array);\nin safetensors, VALUE is a string (a leading str: is dropped)")
	fs.Var(editFlag{"set-file", &o.raw}, "set-file", "`KEY=FILE`: set KEY to the text of FILE (a str; UTF-8), e.g. a chat template")
	fs.Var(editFlag{"delete", &o.raw}, "delete", "remove the key `KEY`")
	fs.Var(editFlag{"rename", &o.raw}, "rename", "`OLD=NEW`: rename OLD, keeping its value (and its place in a GGUF)")
	fs.BoolVar(&o.inPlace, "in-place", false, "rewrite only IN's header, when the new header takes exactly the old one's room (GGUF: the header padded to the alignment, at most one alignment shorter; safetensors: at most as long, padded with spaces); otherwise refused. One positioned write per file, then fsync: a crash during that write can leave a torn header (the data is never touched); use -o when that matters")
	o.of.add(fs)
	o.inp.add(fs)
}

func (o *metaOptions) validate(e *env, pos []string) error {
	if len(pos) != 1 {
		return usagef("want one input, got %d arguments", len(pos))
	}
	if o.inPlace && remote.IsRemote(pos[0]) {
		return usagef("--in-place edits a local file; %s is remote: give -o OUT", pos[0])
	}
	if len(o.raw) == 0 {
		if o.of.out != "" || o.inPlace {
			return usagef("no edits: give --set, --set-file, --delete or --rename")
		}
		return nil
	}
	switch {
	case o.inPlace && o.of.out != "":
		return usagef("give either -o OUT or --in-place, not both")
	case !o.inPlace && o.of.out == "":
		return usagef("give -o OUT (a rewrite) or --in-place")
	}
	return nil
}

func (o *metaOptions) run(ctx context.Context, e *env, pos []string) error {
	o.inp.bind(ctx, e)
	in, err := o.inp.open(pos[0])
	if err != nil {
		return err
	}
	defer in.Close()
	if len(o.raw) == 0 {
		return listMeta(e.stdout, in)
	}
	edits, err := parseEdits(o.raw, in.Format)
	if err != nil {
		return err
	}
	if o.inPlace {
		in.Close()
		plan, err := meta.PlanInPlace(pos[0], edits)
		if err != nil {
			if errors.Is(err, meta.ErrNoRoom) {
				return fmt.Errorf("--in-place: %w", err)
			}
			return err
		}
		for _, ed := range edits {
			fmt.Fprintf(e.stdout, "%s\n", ed)
		}
		for _, f := range plan.Files {
			fmt.Fprintf(e.stdout, "%s: header %d of %d bytes\n", f.Path, f.Used, f.Room)
		}
		if o.of.dryRun {
			return nil
		}
		if err := plan.Write(); err != nil {
			return err
		}
		if !o.of.quiet {
			fmt.Fprintf(e.stderr, "edited %s in place (%d edits)\n", pos[0], len(edits))
		}
		return nil
	}
	out, err := meta.Apply(in, edits)
	if err != nil {
		return err
	}
	// A metadata edit keeps the layout: a split GGUF stays split part for part.
	if in.Format == weft.GGUF && len(in.Files) > 1 && o.of.splitMaxSize == "" {
		o.of.keepSplit = true
	}
	if err := o.of.check(out); err != nil {
		return err
	}
	for _, ed := range edits {
		fmt.Fprintf(e.stdout, "%s\n", ed)
	}
	return o.of.write(ctx, e, out, nil, in)
}

// parseEdits turns the flags into edits for a checkpoint of format f.
func parseEdits(raw []rawEdit, f weft.Format) ([]meta.Edit, error) {
	var edits []meta.Edit
	for _, r := range raw {
		var ed meta.Edit
		var err error
		switch r.kind {
		case "set":
			ed, err = meta.ParseSet(r.arg, f)
		case "set-file":
			ed, err = setFromFile(r.arg)
		case "delete":
			if r.arg == "" {
				err = fmt.Errorf("empty key")
			}
			ed = meta.Edit{Kind: meta.Delete, Key: r.arg}
		case "rename":
			ed, err = meta.ParseRename(r.arg)
		}
		if err != nil {
			return nil, usagef("--%s: %v", r.kind, err)
		}
		edits = append(edits, ed)
	}
	return edits, nil
}

// setFromFile reads KEY=FILE into a string set.
func setFromFile(arg string) (meta.Edit, error) {
	key, path, ok := cutEq(arg)
	if !ok {
		return meta.Edit{}, fmt.Errorf("%q: want KEY=FILE", arg)
	}
	f, err := os.Open(path)
	if err != nil {
		return meta.Edit{}, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, metaSetFileMax+1))
	if err != nil {
		return meta.Edit{}, fmt.Errorf("%s: %v", path, err)
	}
	if len(b) > metaSetFileMax {
		return meta.Edit{}, fmt.Errorf("%s: larger than %d bytes", path, metaSetFileMax)
	}
	if !utf8.Valid(b) {
		return meta.Edit{}, fmt.Errorf("%s: not valid UTF-8 text", path)
	}
	return meta.Edit{Kind: meta.Set, Key: key, Value: string(b)}, nil
}

func cutEq(s string) (string, string, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == '=' {
			return s[:i], s[i+1:], i > 0 && i < len(s)-1
		}
	}
	return "", "", false
}

// listMeta prints a checkpoint's metadata: GGUF key-values as TYPE:VALUE (long arrays
// cut), safetensors metadata as strings.
func listMeta(w io.Writer, c *weft.Checkpoint) error {
	switch c.Format {
	case weft.GGUF:
		for _, kv := range c.KV {
			v := meta.FormatValue(kv.Value)
			if len(v) > 120 {
				v = v[:117] + "..."
			}
			fmt.Fprintf(w, "%s=%s\n", kv.Key, v)
		}
	case weft.Safetensors:
		keys := make([]string, 0, len(c.Metadata))
		for k := range c.Metadata {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(w, "%s=%s\n", k, c.Metadata[k])
		}
	default:
		return fmt.Errorf("%s: a %s checkpoint has no metadata", c.Path, c.Format)
	}
	return nil
}
