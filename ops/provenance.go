package ops

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/weft-ml/weft"
)

// Provenance keys, written to safetensors __metadata__ and to GGUF KVs (as strings).
const (
	KeyVersion = "weft.version"
	KeyOp      = "weft.op"
	KeyParams  = "weft.params"
	KeyInputs  = "weft.inputs"
	KeySeed    = "weft.seed"
)

// InputRecord identifies an input checkpoint in an output's provenance.
type InputRecord struct {
	Path       string `json:"path"`
	Format     string `json:"format"`
	HeaderHash string `json:"header_sha256"`
	// DataHash fingerprints the weights (see DataFingerprint): header hashes identify a
	// layout, and a base and its fine-tune usually share one.
	DataHash string `json:"data_fingerprint,omitempty"`
	// URL and Commit say where a remote input was read: its hf:// name or https:// URL
	// (never credentials), and the Hub commit its revision resolved to.
	URL    string `json:"url,omitempty"`
	Commit string `json:"commit,omitempty"`
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

// Record writes how out was made into its metadata (safetensors) or KVs (GGUF): weft's
// version, the op and its parameters (as JSON), the inputs with their header hashes, and the
// seed when the op is random (seed < 0 means none). Earlier weft records are replaced.
func Record(out *weft.Checkpoint, op string, params any, inputs []*weft.Checkpoint, seed int64) error {
	p, err := json.Marshal(params)
	if err != nil {
		return err
	}
	recs := make([]InputRecord, len(inputs))
	for i, in := range inputs {
		recs[i] = InputRecord{Path: filepath.Base(in.Path), Format: string(in.Format), HeaderHash: in.HeaderHash, DataHash: DataFingerprint(in), URL: in.URL, Commit: in.Commit}
	}
	ins, err := json.Marshal(recs)
	if err != nil {
		return err
	}
	vals := [][2]string{{KeyVersion, weft.Version}, {KeyOp, op}, {KeyParams, string(p)}, {KeyInputs, string(ins)}}
	if seed >= 0 {
		vals = append(vals, [2]string{KeySeed, strconv.FormatInt(seed, 10)})
	}
	if out.Format == weft.GGUF {
		out.KV = removeKV(out.KV, KeySeed)
		for _, kv := range vals {
			out.SetKV(kv[0], kv[1])
		}
		return nil
	}
	m := make(map[string]string, len(out.Metadata)+len(vals))
	for k, v := range out.Metadata {
		if k != KeySeed {
			m[k] = v
		}
	}
	for _, kv := range vals {
		m[kv[0]] = kv[1]
	}
	out.Metadata = m
	return nil
}

func removeKV(kvs []weft.KV, key string) []weft.KV {
	out := kvs[:0:0]
	for _, kv := range kvs {
		if kv.Key != key {
			out = append(out, kv)
		}
	}
	return out
}

// Derive returns a new checkpoint that starts as a shallow copy of in: same format, path,
// directory, metadata (copied), KVs (copied), side files (copied slice) and tensor list
// (copied slice of the same tensors), ready for an op to replace what it changes. It holds
// no files: closing it closes nothing.
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
	out.Closers = nil
	// It is not the remote checkpoint it came from (Record names inputs by their own URL).
	out.URL, out.Commit = "", ""
	return &out
}
