package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"runtime"
	"strings"

	"github.com/weft-ml/weft/ops/verify"
)

func verifyCmd() *command {
	return &command{
		name:    "verify",
		summary: "re-read a checkpoint end to end: structure, every byte, NaN/Inf, and its provenance",
		usage: `Usage: weft verify PATH [--inputs IN ...] [INPUT ...] [--samples N | --full]
                   [--structure-only] [--json] [--allow-nonfinite] [--threads N] [--quiet]

Opens PATH (any checkpoint weft reads: the readers check headers, sizes, offsets and shard
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

Prints one line per tensor (or a report with --json) and exits 1 if anything is wrong.

Flags:
  --inputs IN          an input checkpoint or file (repeatable; further arguments are
                       inputs too)
  --samples N          elements compared per tensor (default 1000; 0 is --structure-only)
  --full               compare every element of every tensor
  --structure-only     do not replay: check PATH on its own
  --allow-nonfinite    report NaN and Inf values without failing
  --json               machine-readable report
  --threads N          reader threads
  --quiet              no progress bar
` + inputUsage + `
Example:
  weft verify out/blend-0.5 --inputs out/base out/tuned
  weft verify resharded/ --inputs original/
`,
		run: runVerify,
	}
}

func runVerify(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	var inputs stringList
	fs.Var(&inputs, "inputs", "")
	samples := fs.Int("samples", verify.DefaultSamples, "")
	full := fs.Bool("full", false, "")
	structure := fs.Bool("structure-only", false, "")
	allowNF := fs.Bool("allow-nonfinite", false, "")
	asJSON := fs.Bool("json", false, "")
	threads := fs.Int("threads", runtime.NumCPU(), "")
	quiet := fs.Bool("quiet", false, "")
	var inp inputFlags
	inp.add(ctx, fs, e)
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return usagef("want a checkpoint to verify")
	}
	if *threads < 1 {
		return usagef("--threads must be at least 1, got %d", *threads)
	}
	if *samples < 0 {
		return usagef("--samples must be 0 or more, got %d", *samples)
	}
	opts := verify.Options{Inputs: append(inputs, pos[1:]...), Samples: *samples, Full: *full,
		StructureOnly: *structure || *samples == 0, Threads: *threads, AllowNonFinite: *allowNF, Open: inp.open}
	if opts.StructureOnly && (len(opts.Inputs) > 0 || *full) {
		return usagef("--structure-only (or --samples 0) checks PATH alone: it takes no inputs and no --full")
	}
	bar := e.newProgress("reading", *quiet)
	opts.Progress = bar.fn()
	rep, err := verify.Verify(ctx, pos[0], opts)
	bar.finish()
	if err != nil {
		return err
	}
	if *asJSON {
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
	fmt.Fprintf(w, "verify:  %s\nformat:  %s, %d file(s), %d tensors, %s\n", safe(r.Path), r.Format, len(r.Files), len(r.Tensors), humanBytes(r.BytesRead))
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
	fmt.Fprintf(w, "\nresult: %s; %d tensors, %d parameters, %s read, %d tensors decoded", result, len(r.Tensors), params, humanBytes(r.BytesRead), decoded)
	if r.Provenance != nil && r.Provenance.Verified {
		fmt.Fprintf(w, ", %d elements compared, %d disagree", recomputed, mismatches)
	}
	fmt.Fprintln(w)
}
