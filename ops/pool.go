package ops

import "sync"

// Chunk buffers are reused across chunks: a worker computing a tensor a chunk at a time would
// otherwise allocate (and the collector would clear and reclaim) megabytes per chunk.
var (
	f64Pool  sync.Pool
	bytePool sync.Pool
)

// GetF64 returns a float64 buffer of length n from a pool; PutF64 gives it back. The contents
// are not zeroed.
func GetF64(n int) *[]float64 {
	if p, ok := f64Pool.Get().(*[]float64); ok && cap(*p) >= n {
		*p = (*p)[:n]
		return p
	}
	b := make([]float64, n)
	return &b
}

// PutF64 returns a buffer obtained from GetF64.
func PutF64(p *[]float64) { f64Pool.Put(p) }

// GetBytes returns a byte buffer of length n from a pool; PutBytes gives it back.
func GetBytes(n int) *[]byte {
	if p, ok := bytePool.Get().(*[]byte); ok && cap(*p) >= n {
		*p = (*p)[:n]
		return p
	}
	b := make([]byte, n)
	return &b
}

// PutBytes returns a buffer obtained from GetBytes.
func PutBytes(p *[]byte) { bytePool.Put(p) }
