package quant

// Literal transliterations of ggml's dequantize_row_iq* over ggml's table layout (one
// little-endian uint64 or uint32 per codebook point, one byte per coordinate), used to
// check the table-driven decoders on every block of the reference files and under fuzzing.

import (
	"encoding/binary"
	"math"

	"github.com/weft-ml/weft"
)

// latGGMLTable returns g as ggml's grid table.
func latGGMLTable(g *latGrid) []uint64 {
	t := make([]uint64, len(g.vals))
	for k, v := range g.vals {
		for i := range g.dim {
			t[k] |= uint64(uint8(v[i])) << (8 * i)
		}
	}
	return t
}

var (
	refIQ2XXSGrid = latGGMLTable(iq2xxsGrid)
	refIQ2XSGrid  = latGGMLTable(iq2xsGrid)
	refIQ2SGrid   = latGGMLTable(iq2sGrid)
	refIQ1SGrid   = latGGMLTable(iq1sGrid)
	refIQ3XXSGrid = latGGMLTable(iq3xxsGrid)
	refIQ3SGrid   = latGGMLTable(iq3sGrid)
)

var refKmask = [8]uint8{1, 2, 4, 8, 16, 32, 64, 128}

func refByte(v uint64, j int) uint8 { return uint8(v >> (8 * j)) }

// refSigned is ggml's `v * (signs & kmask_iq2xs[j] ? -1.f : 1.f)` as GCC compiles it:
// into a sign flip, which (unlike an IEEE multiplication on x86) also flips a NaN's sign.
// The C build behind lattice_ref.txt shows it on blocks with a NaN scale.
func refSigned(v float32, signs uint8, j int) float32 {
	if signs&refKmask[j] != 0 {
		return -v
	}
	return v
}

// latRefDequant decodes src as C does and returns the codebook indices it used.
func latRefDequant(t weft.DType, src []byte, y []float32) []int {
	var used []int
	nb := len(y) / 256
	bb := int(t.BlockBytes())
	for i := range nb {
		x := src[i*bb : (i+1)*bb]
		out := y[i*256 : (i+1)*256]
		switch t {
		case weft.IQ2_XXS:
			d := f16(binary.LittleEndian.Uint16(x))
			for ib32 := range 8 {
				aux0 := binary.LittleEndian.Uint32(x[2+8*ib32:])
				aux1 := binary.LittleEndian.Uint32(x[2+8*ib32+4:])
				db := d * (0.5 + float32(aux1>>28)) * 0.25
				for l := range 4 {
					gi := int(uint8(aux0 >> (8 * l)))
					used = append(used, gi)
					signs := ksignsIQ2[(aux1>>(7*l))&127]
					for j := range 8 {
						out[32*ib32+8*l+j] = refSigned(db*float32(refByte(refIQ2XXSGrid[gi], j)), signs, j)
					}
				}
			}
		case weft.IQ2_XS:
			d := f16(binary.LittleEndian.Uint16(x))
			for ib32 := range 8 {
				sc := x[66+ib32]
				db := [2]float32{d * (0.5 + float32(sc&0xf)) * 0.25, d * (0.5 + float32(sc>>4)) * 0.25}
				for l := range 4 {
					q := binary.LittleEndian.Uint16(x[2+2*(4*ib32+l):])
					gi := int(q & 511)
					used = append(used, gi)
					signs := ksignsIQ2[q>>9]
					for j := range 8 {
						out[32*ib32+8*l+j] = refSigned(db[l/2]*float32(refByte(refIQ2XSGrid[gi], j)), signs, j)
					}
				}
			}
		case weft.IQ2_S:
			d := f16(binary.LittleEndian.Uint16(x))
			qs, qh, scales := x[2:66], x[66:74], x[74:82]
			signs := qs[32:]
			for ib32 := range 8 {
				db := [2]float32{d * (0.5 + float32(scales[ib32]&0xf)) * 0.25, d * (0.5 + float32(scales[ib32]>>4)) * 0.25}
				for l := range 4 {
					dl := db[l/2]
					gi := int(qs[l]) | (int(qh[ib32])<<(8-2*l))&0x300
					used = append(used, gi)
					for j := range 8 {
						out[32*ib32+8*l+j] = refSigned(dl*float32(refByte(refIQ2SGrid[gi], j)), signs[l], j)
					}
				}
				qs = qs[4:]
				signs = signs[4:]
			}
		case weft.IQ3_XXS:
			d := f16(binary.LittleEndian.Uint16(x))
			qs := x[2:66]
			ss := x[66:98]
			for ib32 := range 8 {
				aux32 := binary.LittleEndian.Uint32(ss[4*ib32:])
				db := d * (0.5 + float32(aux32>>28)) * 0.5
				for l := range 4 {
					signs := ksignsIQ2[(aux32>>(7*l))&127]
					g1, g2 := int(qs[2*l]), int(qs[2*l+1])
					used = append(used, g1, g2)
					for j := range 4 {
						out[32*ib32+8*l+j] = refSigned(db*float32(refByte(refIQ3XXSGrid[g1], j)), signs, j)
						out[32*ib32+8*l+j+4] = refSigned(db*float32(refByte(refIQ3XXSGrid[g2], j)), signs, j+4)
					}
				}
				qs = qs[8:]
			}
		case weft.IQ3_S:
			d := f16(binary.LittleEndian.Uint16(x))
			qs, qh, signs, scales := x[2:66], x[66:74], x[74:106], x[106:110]
			o := 0
			for ib32 := 0; ib32 < 8; ib32 += 2 {
				db1 := d * float32(1+2*int32(scales[ib32/2]&0xf))
				db2 := d * float32(1+2*int32(scales[ib32/2]>>4))
				for half, db := range [2]float32{db1, db2} {
					for l := range 4 {
						g1 := int(qs[2*l]) | (int(qh[half])<<(8-2*l))&256
						g2 := int(qs[2*l+1]) | (int(qh[half])<<(7-2*l))&256
						used = append(used, g1, g2)
						for j := range 4 {
							out[o+j] = refSigned(db*float32(refByte(refIQ3SGrid[g1], j)), signs[l], j)
							out[o+j+4] = refSigned(db*float32(refByte(refIQ3SGrid[g2], j)), signs[l], j+4)
						}
						o += 8
					}
					qs = qs[8:]
					signs = signs[4:]
				}
				qh = qh[2:]
			}
		case weft.IQ1_S:
			d := f16(binary.LittleEndian.Uint16(x))
			qs := x[2:34]
			for ib := range 8 {
				qh := binary.LittleEndian.Uint16(x[34+2*ib:])
				dl := d * float32(2*((qh>>12)&7)+1)
				delta := float32(0.125)
				if qh&0x8000 != 0 {
					delta = -0.125
				}
				for l := range 4 {
					gi := int(qs[l]) | int((qh>>(3*l))&7)<<8
					used = append(used, gi)
					for j := range 8 {
						out[32*ib+8*l+j] = dl * (float32(int8(refByte(refIQ1SGrid[gi], j))) + delta)
					}
				}
				qs = qs[4:]
			}
		case weft.IQ1_M:
			qs, qh := x[0:32], x[32:48]
			var sc [4]uint16
			for k := range sc {
				sc[k] = binary.LittleEndian.Uint16(x[48+2*k:])
			}
			u16 := (sc[0] >> 12) | ((sc[1] >> 8) & 0x00f0) | ((sc[2] >> 4) & 0x0f00) | (sc[3] & 0xf000)
			d := f16(u16)
			for ib := range 8 {
				dl1 := d * float32(2*((sc[ib/2]>>(6*(ib%2)+0))&0x7)+1)
				dl2 := d * float32(2*((sc[ib/2]>>(6*(ib%2)+3))&0x7)+1)
				idx := [4]int{
					int(qs[0]) | (int(qh[0])<<8)&0x700,
					int(qs[1]) | (int(qh[0])<<4)&0x700,
					int(qs[2]) | (int(qh[1])<<8)&0x700,
					int(qs[3]) | (int(qh[1])<<4)&0x700,
				}
				var delta [4]float32
				for k, bit := range [4]uint8{qh[0] & 0x08, qh[0] & 0x80, qh[1] & 0x08, qh[1] & 0x80} {
					delta[k] = 0.125
					if bit != 0 {
						delta[k] = -0.125
					}
				}
				for l := range 4 {
					dl := dl1
					if l >= 2 {
						dl = dl2
					}
					used = append(used, idx[l])
					for j := range 8 {
						out[32*ib+8*l+j] = dl * (float32(int8(refByte(refIQ1SGrid[idx[l]], j))) + delta[l])
					}
				}
				qs = qs[4:]
				qh = qh[2:]
			}
		default:
			panic("latRefDequant: " + t.String())
		}
	}
	return used
}

var _ = math.Float32bits
