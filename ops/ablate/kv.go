package ablate

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/arch"
	"github.com/weft-ml/weft/ops"
)

// ggufKVInt returns an integer KV of c (the value for layer l when the KV is a per-layer
// array and l >= 0).
func ggufKVInt(c *weft.Checkpoint, key string, l int) (int64, bool) {
	v, ok := c.GetKV(key)
	if !ok {
		return 0, false
	}
	if n, ok := ops.KVInt(v); ok {
		return n, true
	}
	rv := reflect.ValueOf(v)
	if l >= 0 && rv.Kind() == reflect.Slice && l < rv.Len() {
		return ops.KVInt(rv.Index(l).Interface())
	}
	return 0, false
}

// remapKVs updates the block count, every per-layer array and the leading/trailing layer
// counts of out's KVs for the output layer sequence seq of a model with n layers.
func remapKVs(out *weft.Checkpoint, archName string, n int, seq []int) ([]Change, error) {
	var changes []Change
	prefix := archName + "."
	blockKey := arch.GGUFKey(arch.GGUFBlockCount, archName)
	capped := map[string]bool{}
	for _, k := range arch.GGUFCappedLayerKeys {
		capped[prefix+k] = true
	}
	for i, kv := range out.KV {
		if !strings.HasPrefix(kv.Key, prefix) {
			continue
		}
		sub := strings.TrimPrefix(kv.Key, prefix)
		switch {
		case kv.Key == blockKey:
			nv, err := ops.SameIntType(kv.Value, int64(len(seq)))
			if err != nil {
				return nil, fmt.Errorf("ablate: gguf key %s: %w", kv.Key, err)
			}
			out.KV[i].Value = nv
			changes = append(changes, change("gguf", kv.Key, kv.Value, nv))
		case capped[kv.Key]:
			k, ok := ops.KVInt(kv.Value)
			if !ok {
				return nil, fmt.Errorf("ablate: gguf key %s is %T, not an integer", kv.Key, kv.Value)
			}
			kk := int(min(max(k, 0), int64(n)))
			var nk int
			var err error
			if arch.GGUFTrailingLayerKeys[sub] {
				nk, err = trailingCount(kk, n, seq)
			} else {
				nk, err = leadingCount(kk, n, seq)
			}
			if err != nil {
				return nil, fmt.Errorf("ablate: gguf key %s (%d): %v", kv.Key, k, err)
			}
			if int64(nk) != k {
				nv, err := ops.SameIntType(kv.Value, int64(nk))
				if err != nil {
					return nil, fmt.Errorf("ablate: gguf key %s: %w", kv.Key, err)
				}
				out.KV[i].Value = nv
				changes = append(changes, change("gguf", kv.Key, kv.Value, nv))
			}
		case !arch.GGUFNotPerLayerKeys[sub]:
			rv := reflect.ValueOf(kv.Value)
			if rv.Kind() != reflect.Slice || rv.Len() != n {
				continue
			}
			nr := reflect.MakeSlice(rv.Type(), len(seq), len(seq))
			for j, s := range seq {
				nr.Index(j).Set(rv.Index(s))
			}
			out.KV[i].Value = nr.Interface()
			changes = append(changes, change("gguf", kv.Key, kv.Value, nr.Interface()))
		}
	}
	return changes, nil
}

// change makes a Change of two values that marshal to JSON.
func change(file, key string, old, new any) Change {
	for _, p := range []*any{&old, &new} {
		if b, ok := (*p).([]uint8); ok { // not base64, as json would have it
			ints := make([]int, len(b))
			for i, x := range b {
				ints[i] = int(x)
			}
			*p = ints
		}
	}
	o, _ := json.Marshal(old)
	n, _ := json.Marshal(new)
	return Change{File: file, Key: key, Old: o, New: n}
}
