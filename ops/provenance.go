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
	"sync"

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

// fingerprintBytes is how much of each end of every tensor DataFingerprint reads.
const fingerprintBytes = 4096

// DataFingerprint returns a hex SHA-256 over every tensor's name and its first and last
// 4 KiB of data: cheap (a few reads per tensor), and different for two checkpoints of one
// layout whose weights differ anywhere near a tensor's ends. It returns "" if a read fails.
func DataFingerprint(c *weft.Checkpoint) string {
	// The pieces are read by a few goroutines (remote inputs answer each read after a round
	// trip), a batch of tensors at a time, and hashed in tensor order.
	const workers, batch = 16, 256
	type piece struct {
		head, tail []byte
		ok         bool
	}
	h := sha256.New()
	pieces := make([]piece, batch)
	for lo := 0; lo < len(c.Tensors); lo += batch {
		ts := c.Tensors[lo:min(lo+batch, len(c.Tensors))]
		next := make(chan int)
		var wg sync.WaitGroup
		for w := 0; w < min(workers, len(ts)); w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range next {
					t := ts[i]
					pieces[i] = piece{}
					n, err := t.Size()
					if err != nil {
						continue
					}
					p := piece{head: make([]byte, min(n, fingerprintBytes))}
					if k, _ := t.Data.ReadAt(p.head, 0); k != len(p.head) {
						continue
					}
					if n > fingerprintBytes {
						p.tail = make([]byte, min(n-fingerprintBytes, fingerprintBytes))
						if k, _ := t.Data.ReadAt(p.tail, n-int64(len(p.tail))); k != len(p.tail) {
							continue
						}
					}
					p.ok = true
					pieces[i] = p
				}
			}()
		}
		for i := range ts {
			next <- i
		}
		close(next)
		wg.Wait()
		for i, t := range ts {
			if !pieces[i].ok {
				return ""
			}
			h.Write([]byte(t.Name))
			h.Write([]byte{0})
			h.Write(pieces[i].head)
			h.Write(pieces[i].tail)
		}
	}
	return hex.EncodeToString(h.Sum(nil))
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
// inputs. An input on disk is recorded by name, header hash and data fingerprint; an input
// derived in memory by an earlier op (it has no header hash) brings that op's steps, which
// come first, and is recorded as their output: a chain of ops appends steps.
func Record(out *weft.Checkpoint, op string, params any, in Inputs, seed int64, format weft.Format) error {
	raw, err := json.Marshal(params)
	if err != nil {
		return fmt.Errorf("provenance: %s parameters: %w", op, err)
	}
	var steps []Step
	st := Step{Op: op, Params: raw, Format: string(format)}
	if seed >= 0 {
		st.Seed = &seed
	}
	for _, c := range in.Checkpoints {
		if c.HeaderHash == "" {
			if p, err := ReadProvenance(c); err == nil && p != nil && !p.Legacy {
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
				last := len(steps) - 1
				st.Inputs = append(st.Inputs, InputRecord{Step: &last})
				continue
			}
		}
		st.Inputs = append(st.Inputs, InputRecord{Path: filepath.Base(c.Path), Format: string(c.Format), HeaderHash: c.HeaderHash, DataHash: DataFingerprint(c), URL: c.URL, Commit: c.Commit})
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
	old := map[string]bool{legacyKeyOp: true, legacyKeyParams: true, legacyKeyInputs: true, legacyKeySeed: true}
	if format == weft.GGUF {
		kept := out.KV[:0:0]
		for _, kv := range out.KV {
			if !old[kv.Key] {
				kept = append(kept, kv)
			}
		}
		out.KV = kept
		for _, kv := range vals {
			out.SetKV(kv[0], kv[1])
		}
		return nil
	}
	m := make(map[string]string, len(out.Metadata)+len(vals))
	for k, v := range out.Metadata {
		if !old[k] {
			m[k] = v
		}
	}
	for _, kv := range vals {
		m[kv[0]] = kv[1]
	}
	out.Metadata = m
	return nil
}

// Derive returns a new checkpoint that starts as a shallow copy of in: same format, path,
// directory, metadata (copied), KVs (copied), side files (copied slice) and tensor list
// (copied slice of the same tensors), ready for an op to replace what it changes. It holds
// no files (closing it closes nothing) and has no header hash: it is not a file on disk, so
// that a later op records it as the output of this one.
func Derive(in *weft.Checkpoint) *weft.Checkpoint {
	out := *in
	out.Tensors = append([]*weft.Tensor(nil), in.Tensors...)
	out.KV = append([]weft.KV(nil), in.KV...)
	out.SideFiles = append([]weft.SideFile(nil), in.SideFiles...)
	if in.Metadata != nil {
		out.Metadata = make(map[string]string, len(in.Metadata))
		for k, v := range in.Metadata {
			out.Metadata[k] = v
		}
	}
	out.HeaderHash = ""
	out.Closers = nil
	// It is not the remote checkpoint it came from (Record names inputs by their own URL).
	out.URL, out.Commit = "", ""
	return &out
}
