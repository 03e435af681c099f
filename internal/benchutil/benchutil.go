// Package benchutil reports benchmark throughput in a way that survives a shared machine:
// beside the mean rate over all iterations (what go test reports as ns/op), the rate of the
// fastest iteration, which other processes disturbed least.
package benchutil

import (
	"testing"
	"time"
)

// Loop runs fn once per benchmark iteration (b.Loop), timing each call, and reports the
// mean rate ("Melem/s") and the best single call's rate ("best-Melem/s") for elems elements
// per call.
func Loop(b *testing.B, elems int, fn func()) {
	var best time.Duration
	for b.Loop() {
		t0 := time.Now()
		fn()
		if d := time.Since(t0); best == 0 || d < best {
			best = d
		}
	}
	b.ReportMetric(float64(elems)*float64(b.N)/b.Elapsed().Seconds()/1e6, "Melem/s")
	if best > 0 {
		b.ReportMetric(float64(elems)/best.Seconds()/1e6, "best-Melem/s")
	}
}

// Chunks runs, once per benchmark iteration, fn(k) for k = 0..n-1 (n chunks of elems
// elements each), timing each call. It reports the mean rate and the rate of the fastest
// chunk ("best-Melem/s"): chunks of a few milliseconds each, for the compared code paths
// alike, so that each path gets the same chance of an undisturbed slice of time.
func Chunks(b *testing.B, n, elems int, fn func(k int)) {
	var best time.Duration
	for b.Loop() {
		for k := 0; k < n; k++ {
			t0 := time.Now()
			fn(k)
			if d := time.Since(t0); best == 0 || d < best {
				best = d
			}
		}
	}
	b.ReportMetric(float64(n*elems)*float64(b.N)/b.Elapsed().Seconds()/1e6, "Melem/s")
	if best > 0 {
		b.ReportMetric(float64(elems)/best.Seconds()/1e6, "best-Melem/s")
	}
}
