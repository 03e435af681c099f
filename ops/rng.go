package ops

import (
	"crypto/sha256"
	"encoding/binary"
	"math"
	"math/rand/v2"
)

// Stream is a counter-based random stream for one row of one tensor: it depends only on
// (seed, tensor name, row), never on thread count, chunking or order of work. It is ChaCha8
// keyed by SHA-256 of those three, and its normals come from the Box-Muller transform, so
// the bytes are fixed by this code and not by the Go version.
type Stream struct {
	c     *rand.ChaCha8
	spare float64
	has   bool
}

// RowStream returns the stream of row `row` of tensor `tensor` under `seed`.
func RowStream(seed uint64, tensor string, row int64) *Stream {
	h := sha256.New()
	var b [8]byte
	h.Write([]byte("weft.rng.v1\x00"))
	binary.LittleEndian.PutUint64(b[:], seed)
	h.Write(b[:])
	h.Write([]byte(tensor))
	h.Write([]byte{0})
	binary.LittleEndian.PutUint64(b[:], uint64(row))
	h.Write(b[:])
	var key [32]byte
	copy(key[:], h.Sum(nil))
	return &Stream{c: rand.NewChaCha8(key)}
}

// Uint64 returns 64 random bits.
func (s *Stream) Uint64() uint64 { return s.c.Uint64() }

// Uniform returns a uniform value in the open interval (0, 1).
func (s *Stream) Uniform() float64 {
	return (float64(s.c.Uint64()>>11) + 0.5) * (1.0 / (1 << 53))
}

// Normal returns a standard normal value (Box-Muller; both values of a pair are used).
func (s *Stream) Normal() float64 {
	if s.has {
		s.has = false
		return s.spare
	}
	u1, u2 := s.Uniform(), s.Uniform()
	r := math.Sqrt(-2 * math.Log(u1))
	sin, cos := math.Sincos(2 * math.Pi * u2)
	s.spare, s.has = r*sin, true
	return r * cos
}
