package glitch

import (
	"testing"

	"github.com/weft-ml/weft/ckpt"
	"github.com/weft-ml/weft/internal/testshared"
)

// TestScanProgress: a scan reports the bytes it reads; an untied model's total is the
// embedding and the head, read once each.
func TestScanProgress(t *testing.T) {
	c, err := ckpt.Open(testshared.Testdata(t, "hf/micro-base"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var last, total int64
	calls := 0
	res, err := Scan(c, ScanOptions{Top: 5, Progress: func(done, tot int64) {
		if done < last || done > tot {
			t.Errorf("progress %d of %d after %d", done, tot, last)
		}
		last, total = done, tot
		calls++
	}})
	if err != nil {
		t.Fatal(err)
	}
	want := c.Tensor(res.Tensor).MustSize() + c.Tensor(res.Head).MustSize()
	if calls == 0 || last != want || total != want {
		t.Fatalf("%d calls, last %d of %d; want %d", calls, last, total, want)
	}
	// Without a callback nothing is wrapped: the same result.
	plain, err := Scan(c, ScanOptions{Top: 5})
	if err != nil || plain.Tokens[0].ID != res.Tokens[0].ID || plain.Tokens[0].Indicator != res.Tokens[0].Indicator {
		t.Fatalf("%v %+v %+v", err, plain.Tokens[0], res.Tokens[0])
	}

	// Tied (a GGUF without output.weight): the total first allows every pass of the
	// principal component, then shrinks to what was read; it ends where the reading does.
	g, err := ckpt.Open(testshared.Testdata(t, "gguf/micro-base-f16.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	for i, x := range g.Tensors {
		if x.Name == "output.weight" {
			g.Tensors = append(g.Tensors[:i], g.Tensors[i+1:]...)
			break
		}
	}
	var first int64
	last, total = 0, 0
	res, err = Scan(g, ScanOptions{Top: 5, Progress: func(done, tot int64) {
		if first == 0 {
			first = tot
		}
		if done < last || done > tot {
			t.Errorf("progress %d of %d after %d", done, tot, last)
		}
		last, total = done, tot
	}})
	if err != nil {
		t.Fatal(err)
	}
	emb := g.Tensor(res.Tensor).MustSize()
	if !res.Tied || first != emb*(2+maxPCPasses) || last != total || total >= first {
		t.Fatalf("tied %v: first total %d (embedding %d), last %d of %d, %d PC passes", res.Tied, first, emb, last, total, res.PC1Iterations)
	}
}
