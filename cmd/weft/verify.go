package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"strings"

	"github.com/weft-ml/weft/internal/text"
	"github.com/weft-ml/weft/ops/verify"
)

func verifyCmd() *command {
	return &command{
		name:     "verify",
		summary:  "re-read a checkpoint end to end: structure, every byte, NaN/Inf, and its provenance",
		synopsis: []string{"verify PATH [--inputs IN ...] [INPUT ...] [--samples N | --full]\n                   [--structure-only] [--json] [--allow-nonfinite] [--threads N] [--quiet]"},
		about: `Opens PATH (any checkpoint weft reads: the readers check headers, sizes, offsets and shard
indexes), reads every byte of every tensor in chunks (truncated or unreadable files fail
here), counts NaN and Inf values of every floating-point or decodable quantized tensor, and
parses the .json side files of a Hugging Face directory.

When PATH records how weft made it (every op records its steps: op, parameters, seed and
inputs), verify replays the steps with the ops' own planning from the recorded inputs and
compares the result with PATH: every tensor's type and shape, a sample of about N elements
(whole rows, the first and last among them) of every tensor (all of them with --full), the
GGUF key-values or safetensors metadata, and the side files, byte for byte.
Inputs are recorded by base name, header hash and a fingerprint of their data: give them with
--inputs (or as further arguments), or leave them beside PATH under their recorded names.
Recorded inputs that cannot be found are an error (exit 1) naming them, unless
--structure-only is given.

A checkpoint without provenance (a reshard, a split, a copy) is compared tensor by tensor,
byte for byte, with the one input given with --inputs.

Prints one line per tensor (or a report with --json) and exits 1 if anything is wrong.`,
		examples: []example{
			{line: "weft verify blend-0.5 --inputs base chat"},
			{line: "weft verify blend-0.5 base chat --full --json"},
			{line: "weft verify model.gguf --structure-only"},
		},
		newOptions: func() options { return &verifyOptions{} },
	}
}

// verifyOptions are weft verify's options.
type verifyOptions struct {
	inputs                           stringList
	samples, threads                 int
	full, structure, allowNF, asJSON bool
	quiet                            bool
	inp                              inputFlags
}

func (o *verifyOptions) addFlags(fs *flagSet) {
	fs.Var(&o.inputs, "inputs", "an input checkpoint or file `IN` (repeatable; further arguments are inputs too)")
	fs.IntVar(&o.samples, "samples", verify.DefaultSamples, "about `N` elements compared per tensor (0 is --structure-only)")
	fs.BoolVar(&o.full, "full", false, "compare every element of every tensor")
	fs.BoolVar(&o.structure, "structure-only", false, "do not replay: check PATH on its own")
	fs.BoolVar(&o.allowNF, "allow-nonfinite", false, "report NaN and Inf values without failing")
	fs.BoolVar(&o.asJSON, "json", false, "machine-readable report")
	fs.IntVar(&o.threads, "threads", runtime.NumCPU(), "reader threads `N` (default: the number of CPUs)")
	fs.BoolVar(&o.quiet, "quiet", false, "no progress bar")
	o.inp.add(fs)
}

func (o *verifyOptions) validate(e *env, pos []string) error {
	if len(pos) == 0 {
		return usagef("want a checkpoint to verify")
	}
	if o.threads < 1 {
		return usagef("--threads must be at least 1, got %d", o.threads)
	}
	if o.samples < 0 {
		return usagef("--samples must be 0 or more, got %d", o.samples)
	}
	if (o.structure || o.samples == 0) && (len(o.inputs)+len(pos)-1 > 0 || o.full) {
		return usagef("--structure-only (or --samples 0) checks PATH alone: it takes no inputs and no --full")
	}
	return nil
}

func (o *verifyOptions) run(ctx context.Context, e *env, pos []string) error {
	o.inp.bind(ctx, e)
	opts := verify.Options{Inputs: append(o.inputs, pos[1:]...), Samples: o.samples, Full: o.full,
		StructureOnly: o.structure || o.samples == 0, Threads: o.threads, AllowNonFinite: o.allowNF, Open: o.inp.open}
	bar := e.newProgress("reading", o.quiet)
	opts.Progress = bar.fn()
	rep, err := verify.Verify(ctx, pos[0], opts)
	bar.finish()
	if err != nil {
		return err
	}
	if o.asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		printVerify(e.stdout, rep)
	}
	if n := rep.ProblemCount(); n > 0 {
		return fmt.Errorf("%s: %d problem(s) found", pos[0], n)
	}
	return nil
}

func printVerify(w io.Writer, r *verify.Report) {
	var params, decoded int64
	for _, t := range r.Tensors {
		n := int64(1)
		for _, d := range t.Shape {
			n *= d
		}
		params += n
		if t.Decoded {
			decoded++
		}
	}
	fmt.Fprintf(w, "verify:  %s\nformat:  %s, %d file(s), %d tensors, %s\n", safe(r.Path), r.Format, len(r.Files), len(r.Tensors), text.Bytes(r.BytesRead))
	if p := r.Provenance; p != nil {
		if len(p.Steps) == 0 {
			fmt.Fprintf(w, "made by: %s\n", safe(p.Op))
		}
		for i, st := range p.Steps {
			lead := "made by:"
			if i > 0 {
				lead = "   then:"
			}
			seed := ""
			if st.Seed != nil {
				seed = fmt.Sprintf(" seed %d", *st.Seed)
			}
			fmt.Fprintf(w, "%s weft %s %s %s%s\n", lead, safe(p.Version), safe(st.Op), safe(st.Params), seed)
		}
		for _, in := range p.Inputs {
			where := in.Path
			if where == "" {
				where = "not found"
			}
			fmt.Fprintf(w, "  %-7s %s (%s, sha256 %.12s): %s, %s\n", safe(in.Role), safe(in.Name), safe(in.Format), in.HeaderHash, in.Status, safe(where))
		}
		if p.Note != "" {
			fmt.Fprintf(w, "  %s\n", safe(p.Note))
		}
	}
	fmt.Fprintf(w, "\ntensors:\n")
	var recomputed, mismatches int64
	for _, t := range r.Tensors {
		status := "ok  "
		if len(t.Problems) > 0 {
			status = "FAIL"
		}
		var notes []string
		if t.Decoded {
			notes = append(notes, fmt.Sprintf("%d NaN, %d Inf", t.NaN, t.Inf))
		}
		if t.Recomputed > 0 {
			notes = append(notes, fmt.Sprintf("%d/%d compared elements agree (%s)", t.Recomputed-t.Mismatches, t.Recomputed, t.How))
		} else if t.How != "" {
			notes = append(notes, t.How)
		}
		fmt.Fprintf(w, "  %s %-48s %-7s %-16s %s\n", status, safe(t.Name), t.DType, shapeString(t.Shape), strings.Join(notes, "; "))
		for _, p := range t.Problems {
			fmt.Fprintf(w, "       %s\n", safe(p))
		}
		recomputed += t.Recomputed
		mismatches += t.Mismatches
	}
	if len(r.SideFiles) > 0 {
		fmt.Fprintf(w, "\nside files:\n")
		for _, s := range r.SideFiles {
			if s.Problem != "" {
				fmt.Fprintf(w, "  FAIL %s\n", safe(s.Problem))
			} else {
				fmt.Fprintf(w, "  ok   %s (%s)\n", safe(s.Name), s.Checked)
			}
		}
	}
	for _, p := range r.Problems {
		fmt.Fprintf(w, "\nproblem: %s", safe(p))
	}
	for _, wn := range r.Warnings {
		fmt.Fprintf(w, "\nwarning: %s", safe(wn))
	}
	if len(r.Problems)+len(r.Warnings) > 0 {
		fmt.Fprintln(w)
	}
	result := "OK"
	if n := r.ProblemCount(); n > 0 {
		result = fmt.Sprintf("FAILED: %d problem(s)", n)
	}
	fmt.Fprintf(w, "\nresult: %s; %d tensors, %d parameters, %s read, %d tensors decoded", result, len(r.Tensors), params, text.Bytes(r.BytesRead), decoded)
	if r.Provenance != nil && r.Provenance.Verified {
		fmt.Fprintf(w, ", %d elements compared, %d disagree", recomputed, mismatches)
	}
	fmt.Fprintln(w)
}
