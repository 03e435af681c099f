package hubtest

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/gguf"
	"github.com/weft-ml/weft/safetensors"
)

// ProvenanceStepsKey is where weft records how a checkpoint was made, each step with its
// inputs (ops.KeySteps; repeated here so that this package does not depend on ops).
const ProvenanceStepsKey = "weft.steps"

// SameOutput checks that got, written from remote inputs, is what want, written from the
// same inputs on local files, is: the same files, byte for byte, except where weft's
// provenance records the inputs (whose url and commit fields only a remote input has); in
// safetensors and GGUF files that record is compared without those fields, and every other
// metadata entry, every tensor's name, type, shape and place, and the data section are
// compared byte for byte.
func SameOutput(t testing.TB, want, got string) {
	t.Helper()
	st, err := os.Stat(want)
	if err != nil {
		t.Fatal(err)
	}
	if !st.IsDir() {
		sameFile(t, want, got)
		return
	}
	ents, err := os.ReadDir(want)
	if err != nil {
		t.Fatal(err)
	}
	gents, err := os.ReadDir(got)
	if err != nil {
		t.Fatal(err)
	}
	var wn, gn []string
	for _, e := range ents {
		wn = append(wn, e.Name())
	}
	for _, e := range gents {
		gn = append(gn, e.Name())
	}
	if !reflect.DeepEqual(wn, gn) {
		t.Fatalf("output files differ:\n  local:  %v\n  remote: %v", wn, gn)
	}
	for _, n := range wn {
		sameFile(t, filepath.Join(want, n), filepath.Join(got, n))
	}
}

func sameFile(t testing.TB, want, got string) {
	t.Helper()
	a, err := os.ReadFile(want)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(got)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a, b) {
		return
	}
	name := filepath.Base(want)
	switch {
	case strings.HasSuffix(name, ".safetensors"):
		fa, err1 := safetensors.Read(bytes.NewReader(a), int64(len(a)), want)
		fb, err2 := safetensors.Read(bytes.NewReader(b), int64(len(b)), got)
		if err1 != nil || err2 != nil {
			t.Fatalf("%s: %v / %v", name, err1, err2)
		}
		if !reflect.DeepEqual(normalize(t, fa.Metadata), normalize(t, fb.Metadata)) {
			t.Fatalf("%s: metadata differs:\n  local:  %v\n  remote: %v", name, fa.Metadata, fb.Metadata)
		}
		if len(fa.Tensors) != len(fb.Tensors) {
			t.Fatalf("%s: %d tensors, remote %d", name, len(fa.Tensors), len(fb.Tensors))
		}
		for i := range fa.Tensors {
			x, y := fa.Tensors[i], fb.Tensors[i]
			if !reflect.DeepEqual(x.TensorInfo, y.TensorInfo) || x.Offset-fa.HeaderSize != y.Offset-fb.HeaderSize || x.Length != y.Length {
				t.Fatalf("%s: tensor %d differs: %+v / %+v", name, i, x, y)
			}
		}
		if !bytes.Equal(a[fa.HeaderSize:], b[fb.HeaderSize:]) {
			t.Fatalf("%s: data sections differ", name)
		}
	case strings.HasSuffix(name, ".gguf"):
		fa, err1 := gguf.Read(bytes.NewReader(a), int64(len(a)), want)
		fb, err2 := gguf.Read(bytes.NewReader(b), int64(len(b)), got)
		if err1 != nil || err2 != nil {
			t.Fatalf("%s: %v / %v", name, err1, err2)
		}
		ka, kb := normalizeKV(t, fa.KV), normalizeKV(t, fb.KV)
		if len(ka) != len(kb) {
			t.Fatalf("%s: %d key-values, remote %d", name, len(ka), len(kb))
		}
		for i := range ka {
			if !reflect.DeepEqual(ka[i], kb[i]) {
				t.Fatalf("%s: key-value %d differs: %q = %.200v, remote %q = %.200v", name, i, ka[i].Key, ka[i].Value, kb[i].Key, kb[i].Value)
			}
		}
		if !reflect.DeepEqual(fa.Infos(), fb.Infos()) {
			t.Fatalf("%s: tensor infos differ", name)
		}
		for i := range fa.Tensors {
			if fa.Tensors[i].Offset-fa.DataOffset != fb.Tensors[i].Offset-fb.DataOffset {
				t.Fatalf("%s: tensor %q placed differently", name, fa.Tensors[i].Name)
			}
		}
		if !bytes.Equal(a[fa.DataOffset:], b[fb.DataOffset:]) {
			t.Fatalf("%s: data sections differ", name)
		}
	default:
		t.Fatalf("%s differs between the local and the remote run", name)
	}
}

// normalize returns metadata with the url and commit fields of every step's recorded inputs
// removed.
func normalize(t testing.TB, m map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		if k == ProvenanceStepsKey {
			v = stripRemote(t, v)
		}
		out[k] = v
	}
	return out
}

func normalizeKV(t testing.TB, kvs []weft.KV) []weft.KV {
	out := make([]weft.KV, len(kvs))
	for i, kv := range kvs {
		if s, ok := kv.Value.(string); ok && kv.Key == ProvenanceStepsKey {
			kv.Value = stripRemote(t, s)
		}
		out[i] = kv
	}
	return out
}

func stripRemote(t testing.TB, v string) string {
	var steps []map[string]any
	if err := json.Unmarshal([]byte(v), &steps); err != nil {
		t.Fatalf("%s is not a JSON list: %v", ProvenanceStepsKey, err)
	}
	for _, st := range steps {
		ins, _ := st["inputs"].([]any)
		for _, in := range ins {
			if r, ok := in.(map[string]any); ok {
				delete(r, "url")
				delete(r, "commit")
			}
		}
	}
	b, _ := json.Marshal(steps)
	return string(b)
}
