package quant

// Dequantization of the lattice i-quants, as ggml's dequantize_row_iq2_xxs, ..._iq1_m
// compute it: every output is the float32 product of a block scale and a codebook level
// (negated by a sign bit), the scale computed in float32 in ggml's order of operations.
// Negation is exact, so it is applied to the product's bits.

import (
	"encoding/binary"
	"math"
)

// Bytes per 256-element block.
const (
	iq2xxsBytes = 2 + 64         // d, qs[32] uint16
	iq2xsBytes  = 2 + 64 + 8     // d, qs[32] uint16, scales[8]
	iq2sBytes   = 2 + 64 + 8 + 8 // d, qs[64] (grid low bytes, then signs), qh[8], scales[8]
	iq3xxsBytes = 2 + 96         // d, qs[64] grid indices, 8 uint32 scales and signs
	iq3sBytes   = 2 + 64 + 8 + 32 + 4
	iq1sBytes   = 2 + 32 + 16 // d, qs[32], qh[8] uint16
	iq1mBytes   = 32 + 16 + 8 // qs[32], qh[16], scales[8] (holding the f16 scale too)
)

const iq1Delta = float32(0.125) // IQ1S_DELTA and IQ1M_DELTA

// putSigned8 writes db*vals[j], with element j negated when bit j of s is set. The sign
// bit is flipped even on NaN (a NaN scale), as ggml built by GCC does: GCC compiles its
// multiplication by ±1 into a sign flip.
func putSigned8(y []float32, db float32, vals *[8]int8, s uint8) {
	y = y[:8]
	m := &signMask[s]
	for j := range 8 {
		y[j] = math.Float32frombits(math.Float32bits(db*float32(uint8(vals[j]))) ^ m[j])
	}
}

// putSigned4 writes db*vals[j] for 4 elements, the signs being bits j0..j0+3 of s.
func putSigned4(y []float32, db float32, vals *[8]int8, s uint8, j0 int) {
	y = y[:4]
	m := &signMask[s]
	for j := range 4 {
		y[j] = math.Float32frombits(math.Float32bits(db*float32(uint8(vals[j]))) ^ m[j0+j])
	}
}

func dequantIQ2XXS(src []byte, dst []float32) {
	vals := iq2xxsGrid.vals
	for i := 0; i < len(dst)/256; i++ {
		b := src[i*iq2xxsBytes : (i+1)*iq2xxsBytes]
		y := dst[i*256 : (i+1)*256]
		d := f16(binary.LittleEndian.Uint16(b))
		for ib := range 8 {
			q := b[2+8*ib : 2+8*ib+8]
			a1 := binary.LittleEndian.Uint32(q[4:])
			db := float32(d*(0.5+float32(a1>>28))) * 0.25
			for l := range 4 {
				putSigned8(y[32*ib+8*l:], db, &vals[q[l]], ksignsIQ2[a1>>(7*l)&127])
			}
		}
	}
}

func dequantIQ2XS(src []byte, dst []float32) {
	vals := iq2xsGrid.vals
	for i := 0; i < len(dst)/256; i++ {
		b := src[i*iq2xsBytes : (i+1)*iq2xsBytes]
		y := dst[i*256 : (i+1)*256]
		d := f16(binary.LittleEndian.Uint16(b))
		for ib := range 8 {
			sc := b[66+ib]
			db := [2]float32{
				float32(d*(0.5+float32(sc&15))) * 0.25,
				float32(d*(0.5+float32(sc>>4))) * 0.25,
			}
			for l := range 4 {
				q := binary.LittleEndian.Uint16(b[2+2*(4*ib+l):])
				putSigned8(y[32*ib+8*l:], db[l/2], &vals[q&511], ksignsIQ2[q>>9])
			}
		}
	}
}

func dequantIQ2S(src []byte, dst []float32) {
	vals := iq2sGrid.vals
	for i := 0; i < len(dst)/256; i++ {
		b := src[i*iq2sBytes : (i+1)*iq2sBytes]
		y := dst[i*256 : (i+1)*256]
		d := f16(binary.LittleEndian.Uint16(b))
		qs, signs, qh, scales := b[2:34], b[34:66], b[66:74], b[74:82]
		for ib := range 8 {
			sc := scales[ib]
			db := [2]float32{
				float32(d*(0.5+float32(sc&15))) * 0.25,
				float32(d*(0.5+float32(sc>>4))) * 0.25,
			}
			for l := range 4 {
				idx := int(qs[4*ib+l]) | int(qh[ib])<<(8-2*l)&0x300
				putSigned8(y[32*ib+8*l:], db[l/2], &vals[idx], signs[4*ib+l])
			}
		}
	}
}

func dequantIQ3XXS(src []byte, dst []float32) {
	vals := iq3xxsGrid.vals
	for i := 0; i < len(dst)/256; i++ {
		b := src[i*iq3xxsBytes : (i+1)*iq3xxsBytes]
		y := dst[i*256 : (i+1)*256]
		d := f16(binary.LittleEndian.Uint16(b))
		qs := b[2:66]
		for ib := range 8 {
			a := binary.LittleEndian.Uint32(b[66+4*ib:])
			db := float32(d*(0.5+float32(a>>28))) * 0.5
			for l := range 4 {
				s := ksignsIQ2[a>>(7*l)&127]
				o := 32*ib + 8*l
				putSigned4(y[o:], db, &vals[qs[8*ib+2*l]], s, 0)
				putSigned4(y[o+4:], db, &vals[qs[8*ib+2*l+1]], s, 4)
			}
		}
	}
}

func dequantIQ3S(src []byte, dst []float32) {
	vals := iq3sGrid.vals
	for i := 0; i < len(dst)/256; i++ {
		b := src[i*iq3sBytes : (i+1)*iq3sBytes]
		y := dst[i*256 : (i+1)*256]
		d := f16(binary.LittleEndian.Uint16(b))
		qs, qh, signs, scales := b[2:66], b[66:74], b[74:106], b[106:110]
		for ib := range 8 {
			// Sub-blocks 2k and 2k+1 share scales[k], low and high nibble.
			sc := scales[ib/2] >> (4 * (ib % 2)) & 15
			db := d * float32(1+2*int32(sc))
			h := int(qh[ib])
			for l := range 4 {
				s := signs[4*ib+l]
				o := 32*ib + 8*l
				i1 := int(qs[8*ib+2*l]) | h<<(8-2*l)&256
				i2 := int(qs[8*ib+2*l+1]) | h<<(7-2*l)&256
				putSigned4(y[o:], db, &vals[i1], s, 0)
				putSigned4(y[o+4:], db, &vals[i2], s, 4)
			}
		}
	}
}

func dequantIQ1S(src []byte, dst []float32) {
	vals := iq1sGrid.vals
	for i := 0; i < len(dst)/256; i++ {
		b := src[i*iq1sBytes : (i+1)*iq1sBytes]
		y := dst[i*256 : (i+1)*256]
		d := f16(binary.LittleEndian.Uint16(b))
		qs := b[2:34]
		for ib := range 8 {
			qh := binary.LittleEndian.Uint16(b[34+2*ib:])
			dl := d * float32(2*int32(qh>>12&7)+1)
			delta := iq1Delta
			if qh&0x8000 != 0 {
				delta = -iq1Delta
			}
			for l := range 4 {
				g := &vals[int(qs[4*ib+l])|int(qh>>(3*l)&7)<<8]
				yy := y[32*ib+8*l : 32*ib+8*l+8]
				for j := range 8 {
					yy[j] = dl * (float32(g[j]) + delta)
				}
			}
		}
	}
}

// iq1mScale assembles IQ1_M's f16 super-block scale from the top nibbles of its four
// 16-bit scale words.
func iq1mScale(sc []byte) float32 {
	s0, s1 := binary.LittleEndian.Uint16(sc), binary.LittleEndian.Uint16(sc[2:])
	s2, s3 := binary.LittleEndian.Uint16(sc[4:]), binary.LittleEndian.Uint16(sc[6:])
	return f16(s0>>12 | s1>>8&0x00f0 | s2>>4&0x0f00 | s3&0xf000)
}

func dequantIQ1M(src []byte, dst []float32) {
	vals := iq1sGrid.vals
	for i := 0; i < len(dst)/256; i++ {
		b := src[i*iq1mBytes : (i+1)*iq1mBytes]
		y := dst[i*256 : (i+1)*256]
		qs, qhs, sc := b[0:32], b[32:48], b[48:56]
		d := iq1mScale(sc)
		for ib := range 8 {
			s := binary.LittleEndian.Uint16(sc[2*(ib/2):])
			sh := uint(6 * (ib % 2))
			dl := [2]float32{d * float32(2*int32(s>>sh&7)+1), d * float32(2*int32(s>>(sh+3)&7)+1)}
			qh := qhs[2*ib : 2*ib+2]
			for l := range 4 {
				h := qh[l/2] >> (4 * (l % 2)) // this group's 3 index bits and its delta bit
				delta := iq1Delta
				if h&8 != 0 {
					delta = -iq1Delta
				}
				g := &vals[int(qs[4*ib+l])|int(h&7)<<8]
				yy := y[32*ib+8*l : 32*ib+8*l+8]
				for j := range 8 {
					yy[j] = dl[l/2] * (float32(g[j]) + delta)
				}
			}
		}
	}
}
