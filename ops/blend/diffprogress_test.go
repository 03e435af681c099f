package blend

import (
	"context"
	"sync"
	"testing"

	"github.com/weft-ml/weft/ckpt"
	"github.com/weft-ml/weft/internal/testshared"
)

// TestDiffProgress: Diff reports the bytes of both inputs it reads, never more than the
// total, ending at the total.
func TestDiffProgress(t *testing.T) {
	a, err := ckpt.Open(testshared.Testdata(t, "hf/micro-base"))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := ckpt.Open(testshared.Testdata(t, "hf/micro-tuned"))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var mu sync.Mutex
	var last, total int64
	calls := 0
	_, err = Diff(context.Background(), a, b, DiffOptions{Threads: 2, Progress: func(done, tot int64) {
		mu.Lock()
		defer mu.Unlock()
		if done < last || done > tot {
			t.Errorf("progress %d of %d after %d", done, tot, last)
		}
		last, total = done, tot
		calls++
	}})
	if err != nil {
		t.Fatal(err)
	}
	var want int64
	for _, x := range a.Tensors {
		want += 2 * x.MustSize() // both models hold the same tensors
	}
	if calls == 0 || last != total || total != want {
		t.Fatalf("%d calls, last %d of %d; want %d", calls, last, total, want)
	}
}
