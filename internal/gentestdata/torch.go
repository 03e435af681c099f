package gentestdata

import (
	"fmt"
	"os"
	"strconv"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/hardening"
	"github.com/weft-ml/weft/ops"
)

// storageClass names torch's storage class of each dtype WriteTorch writes.
var storageClass = map[weft.DType]string{
	weft.F32: "FloatStorage", weft.F16: "HalfStorage", weft.BF16: "BFloat16Storage",
	weft.I64: "LongStorage", weft.Bool: "BoolStorage",
}

// WriteTorch writes c's tensors as a PyTorch state dict, as torch.save does: a zip archive
// (data.pkl and one storage per tensor), or with legacy set the pre-zip serialization. Each
// tensor is contiguous in a storage of its own, in c's order. It holds the whole checkpoint
// in memory, which is meant for test data only.
func WriteTorch(c *weft.Checkpoint, path string, legacy bool) error {
	var (
		items    []hardening.Item
		keys     []string
		counts   = map[string]int64{}
		storages = map[string][]byte{}
		legacyP  = &hardening.Pickle{}
	)
	legacyP.Proto(2).Raw('}', '(')
	for i, t := range c.Tensors {
		cls, ok := storageClass[t.DType]
		if !ok {
			return fmt.Errorf("%s: tensor %q: no torch storage for %v", path, t.Name, t.DType)
		}
		n, err := t.NumElements()
		if err != nil {
			return err
		}
		stride := make([]int64, len(t.Shape))
		for d, s := len(t.Shape)-1, int64(1); d >= 0; d-- {
			stride[d] = s
			s *= t.Shape[d]
		}
		key := strconv.Itoa(i)
		v := hardening.View{Class: cls, Key: key, Numel: n, Shape: t.Shape, Stride: stride}
		b, err := ops.ReadAll(t)
		if err != nil {
			return err
		}
		keys = append(keys, key)
		counts[key], storages[key] = n, b
		items = append(items, hardening.Item{Key: t.Name, View: &v})
		legacyP.Str(t.Name).LegacyPickleTensor(v)
	}
	legacyP.Raw('u', '.')
	var data []byte
	if legacy {
		data, _ = hardening.LegacyTorch(legacyP.B, keys, counts, storages)
	} else {
		data = hardening.TorchZip(hardening.StatePickle(items...), keys, storages)
	}
	return os.WriteFile(path, data, 0o644)
}
