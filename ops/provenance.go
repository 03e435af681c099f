package ops

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"github.com/weft-ml/weft"
)

// Provenance keys, written to safetensors __metadata__ and to GGUF key-values (as strings).
const (
	KeyVersion = "weft.version"
	// KeySteps holds the JSON list of the steps that made the checkpoint (see Step).
	KeySteps = "weft.steps"
)

// The keys of the single-step records older versions of weft wrote; they are read (see
// ReadProvenance) and removed when a checkpoint is recorded again.
const (
	legacyKeyOp     = "weft.op"
	legacyKeyParams = "weft.params"
	legacyKeyInputs = "weft.inputs"
	legacyKeySeed   = "weft.seed"
)

// InputRecord identifies one input of a step: a checkpoint on disk (by base name, header
// hash and data fingerprint), a plain file (by base name and SHA-256, such as a direction
// for ablate --project-out), or the output of an earlier step of the same record.
type InputRecord struct {
	Path       string `json:"path,omitempty"`
	Format     string `json:"format,omitempty"`
	HeaderHash string `json:"header_sha256,omitempty"`
	// DataHash fingerprints the weights (see DataFingerprint): header hashes identify a
	// layout, and a base and its fine-tune usually share one.
	DataHash string `json:"data_fingerprint,omitempty"`
	// FileHash is the SHA-256 of a plain file's bytes.
	FileHash string `json:"file_sha256,omitempty"`
	// URL and Commit say where a remote input was read: its hf:// name or https:// URL
	// (never credentials), and the Hub commit its revision resolved to.
	URL    string `json:"url,omitempty"`
	Commit string `json:"commit,omitempty"`
	// Step, when set, says the input is the output of step number *Step (from 0).
	Step *int `json:"step,omitempty"`
}

// IsFile reports whether the record is a plain file rather than a checkpoint.
func (r InputRecord) IsFile() bool { return r.FileHash != "" }

// Step is one operation of a checkpoint's provenance: the op's registered name, its
// parameters (the op's parameter struct as JSON), its seed when it is random, the format of
// its output, and its inputs. Replaying the steps in order rebuilds the checkpoint.
type Step struct {
	Op     string          `json:"op"`
	Params json.RawMessage `json:"params"`
	Seed   *int64          `json:"seed,omitempty"`
	Format string          `json:"format,omitempty"`
	Inputs []InputRecord   `json:"inputs"`
}

// Provenance is how a checkpoint was made.
type Provenance struct {
	// Version is the weft version that wrote the record.
	Version string
	Steps   []Step
	// Legacy reports a record in the single-step form of older weft versions.
	Legacy bool
}

// recorded returns a provenance value of c: from __metadata__ for safetensors, from the
// key-values (where provenance is written as strings) for GGUF.
func recorded(c *weft.Checkpoint, key string) (string, bool) {
	if c.Format == weft.GGUF {
		v, ok := c.GetKV(key)
		if !ok {
			return "", false
		}
		s, ok := v.(string)
		return s, ok
	}
	v, ok := c.Metadata[key]
	return v, ok
}

// ReadProvenance returns c's record of how it was made, or nil when it has none. Records of
// older versions (one step in the keys weft.op, weft.params, weft.inputs and weft.seed) are
// read as a one-step provenance with Legacy set.
func ReadProvenance(c *weft.Checkpoint) (*Provenance, error) {
	p := &Provenance{}
	p.Version, _ = recorded(c, KeyVersion)
	if s, ok := recorded(c, KeySteps); ok {
		if err := json.Unmarshal([]byte(s), &p.Steps); err != nil {
			return nil, fmt.Errorf("provenance: %s is not a JSON list of steps: %v", KeySteps, err)
		}
		if len(p.Steps) == 0 {
			return nil, fmt.Errorf("provenance: %s lists no steps", KeySteps)
		}
		for i, st := range p.Steps {
			for _, in := range st.Inputs {
				if in.Step != nil && (*in.Step < 0 || *in.Step >= i) {
					return nil, fmt.Errorf("provenance: step %d (%s) takes the output of step %d, which does not come before it", i, st.Op, *in.Step)
				}
			}
		}
		return p, nil
	}
	op, ok := recorded(c, legacyKeyOp)
	if !ok {
		return nil, nil
	}
	st := Step{Op: op, Format: string(c.Format), Params: json.RawMessage("{}")}
	if s, ok := recorded(c, legacyKeyParams); ok && json.Valid([]byte(s)) {
		st.Params = json.RawMessage(s)
	}
	ins, ok := recorded(c, legacyKeyInputs)
	if !ok {
		return nil, fmt.Errorf("provenance: records op %q but no %s", op, legacyKeyInputs)
	}
	if err := json.Unmarshal([]byte(ins), &st.Inputs); err != nil {
		return nil, fmt.Errorf("provenance: %s is not a JSON list of inputs: %v", legacyKeyInputs, err)
	}
	if s, ok := recorded(c, legacyKeySeed); ok {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("provenance: %s %q is not an integer", legacyKeySeed, s)
		}
		st.Seed = &n
	}
	p.Steps, p.Legacy = []Step{st}, true
	return p, nil
}

// DataFingerprint returns the data fingerprint of c (weft.DataFingerprint: a hash of every
// tensor's name and first and last 4 KiB), or "" if a read fails. Recording an input does not
// call it: the write computes the fingerprints it records (weft.Deferred).
func DataFingerprint(c *weft.Checkpoint) string {
	fp, err := weft.DataFingerprint(c)
	if err != nil {
		return ""
	}
	return fp
}

// FileHash returns the hex SHA-256 of a file's bytes.
func FileHash(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Record writes how out was made into its metadata (safetensors) or key-values (GGUF),
// whichever format is the output's: weft's version and the list of steps. The new step
// (op, params, seed < 0 for none, output format) takes in's checkpoints and files as its
// inputs. An input on disk is recorded by name, header hash and data fingerprint; the
// fingerprint is computed by the write, from bytes it reads anyway (out.Deferred holds a
// placeholder for it), so that recording reads no tensor data. An input derived in memory by
// earlier ops brings their steps, which come first, and is recorded as their output: a chain
// of ops appends steps. An input in memory that records no steps (built by a program rather
// than an op) is recorded by its format alone.
func Record(out *weft.Checkpoint, op string, params any, in Inputs, seed int64, format weft.Format) error {
	raw, err := json.Marshal(params)
	if err != nil {
		return fmt.Errorf("provenance: %s parameters: %w", op, err)
	}
	var steps []Step
	var deferred []weft.Deferred
	st := Step{Op: op, Params: raw, Format: string(format)}
	if seed >= 0 {
		st.Seed = &seed
	}
	for _, c := range in.Checkpoints {
		if c.HeaderHash == "" {
			p, err := ReadProvenance(c)
			if err != nil {
				return err
			}
			if p != nil && !p.Legacy {
				base := len(steps)
				for _, s := range p.Steps {
					s.Inputs = append([]InputRecord(nil), s.Inputs...)
					for k := range s.Inputs {
						if s.Inputs[k].Step != nil {
							n := *s.Inputs[k].Step + base
							s.Inputs[k].Step = &n
						}
					}
					steps = append(steps, s)
				}
				deferred = append(deferred, c.Deferred...)
				last := len(steps) - 1
				st.Inputs = append(st.Inputs, InputRecord{Step: &last})
				continue
			}
			st.Inputs = append(st.Inputs, InputRecord{Path: filepath.Base(c.Path), Format: string(c.Format)})
			continue
		}
		ph := weft.NewPlaceholder()
		deferred = append(deferred, weft.Deferred{Placeholder: ph, Input: c})
		st.Inputs = append(st.Inputs, InputRecord{Path: filepath.Base(c.Path), Format: string(c.Format), HeaderHash: c.HeaderHash, DataHash: ph, URL: c.URL, Commit: c.Commit})
	}
	for _, f := range in.Files {
		h, err := FileHash(f)
		if err != nil {
			return fmt.Errorf("provenance: %w", err)
		}
		st.Inputs = append(st.Inputs, InputRecord{Path: filepath.Base(f), FileHash: h})
	}
	steps = append(steps, st)
	js, err := json.Marshal(steps)
	if err != nil {
		return err
	}
	vals := [][2]string{{KeyVersion, weft.Version}, {KeySteps, string(js)}}
	stripProvenance(out)
	out.Deferred = deferred
	if format == weft.GGUF {
		for _, kv := range vals {
			out.SetKV(kv[0], kv[1])
		}
		return nil
	}
	if out.Metadata == nil {
		out.Metadata = make(map[string]string, len(vals))
	}
	for _, kv := range vals {
		out.Metadata[kv[0]] = kv[1]
	}
	return nil
}

// provenanceKeys are the keys a record is made of, this version's and older ones'.
var provenanceKeys = map[string]bool{KeyVersion: true, KeySteps: true, legacyKeyOp: true, legacyKeyParams: true, legacyKeyInputs: true, legacyKeySeed: true}

// stripProvenance removes every provenance key from c's metadata and key-values (replacing
// both, which may be shared with another checkpoint) and its deferred values.
func stripProvenance(c *weft.Checkpoint) {
	if c.KV != nil {
		kept := make([]weft.KV, 0, len(c.KV))
		for _, kv := range c.KV {
			if !provenanceKeys[kv.Key] {
				kept = append(kept, kv)
			}
		}
		c.KV = kept
	}
	if c.Metadata != nil {
		m := make(map[string]string, len(c.Metadata))
		for k, v := range c.Metadata {
			if !provenanceKeys[k] {
				m[k] = v
			}
		}
		c.Metadata = m
	}
	c.Deferred = nil
}

// sameRecord makes out's record of how it was made in's: its provenance keys and deferred
// values.
func sameRecord(out, in *weft.Checkpoint) {
	stripProvenance(out)
	for _, kv := range in.KV {
		if provenanceKeys[kv.Key] {
			out.KV = append(out.KV, kv)
		}
	}
	for k, v := range in.Metadata {
		if provenanceKeys[k] {
			if out.Metadata == nil {
				out.Metadata = map[string]string{}
			}
			out.Metadata[k] = v
		}
	}
	out.Deferred = append([]weft.Deferred(nil), in.Deferred...)
}

// Derive returns a new checkpoint for an op to fill from in: the same format, side-file
// directory, metadata and key-values (copied, without in's record of how it was made, which
// Record replaces), side files (a copied slice) and tensor list (a copied slice of the same
// tensors). It is no file: it has no Path, Files or HeaderHash, so that a later op records
// it as the output of this one, and the write protects in's files through its tensors
// (their sources) rather than through names it does not have; it holds no files (closing it
// closes nothing).
func Derive(in *weft.Checkpoint) *weft.Checkpoint {
	out := &weft.Checkpoint{
		Format:      in.Format,
		Dir:         in.Dir,
		Tensors:     append([]*weft.Tensor(nil), in.Tensors...),
		Metadata:    in.Metadata,
		KV:          in.KV,
		GGUFVersion: in.GGUFVersion,
		Alignment:   in.Alignment,
		SideFiles:   append([]weft.SideFile(nil), in.SideFiles...),
	}
	stripProvenance(out)
	return out
}

// Name returns what messages call c: its path, or for a checkpoint derived in memory, the op
// that made it.
func Name(c *weft.Checkpoint) string {
	if c.Path != "" {
		return c.Path
	}
	if p, err := ReadProvenance(c); err == nil && p != nil && len(p.Steps) > 0 {
		return "the output of " + p.Steps[len(p.Steps)-1].Op
	}
	return "a checkpoint in memory"
}

// BaseName is Name with a path shortened to its last element.
func BaseName(c *weft.Checkpoint) string {
	if c.Path != "" {
		return filepath.Base(c.Path)
	}
	return Name(c)
}
