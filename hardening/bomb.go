package hardening

import (
	"archive/zip"
	"bytes"
	"hash/crc32"
)

// bitWriter packs bits least significant first, as deflate does.
type bitWriter struct {
	b    []byte
	acc  uint64
	nacc uint
}

// bits writes the n low bits of v, least significant first.
func (w *bitWriter) bits(v uint64, n uint) {
	w.acc |= v << w.nacc
	w.nacc += n
	for w.nacc >= 8 {
		w.b = append(w.b, byte(w.acc))
		w.acc >>= 8
		w.nacc -= 8
	}
}

// code writes a Huffman code of n bits, most significant bit first.
func (w *bitWriter) code(c uint64, n uint) {
	var r uint64
	for i := uint(0); i < n; i++ {
		r = r<<1 | (c>>i)&1
	}
	w.bits(r, n)
}

func (w *bitWriter) flush() []byte {
	if w.nacc > 0 {
		w.b = append(w.b, byte(w.acc))
	}
	return w.b
}

// DeflateZeros returns a raw deflate stream (one fixed-Huffman block) that inflates to n
// zero bytes, n >= 1, with n-1 a multiple of 258: a literal zero, then copies of 258 bytes
// at distance 1, 13 bits each. A 100 MiB bomb is about 650 KB, built in milliseconds.
func DeflateZeros(n int64) []byte {
	w := &bitWriter{}
	w.bits(1, 1)    // BFINAL
	w.bits(1, 2)    // BTYPE 01: fixed Huffman
	w.code(0x30, 8) // literal 0
	for i := int64(0); i < (n-1)/258; i++ {
		w.code(0xC5, 8) // length code 285: 258 bytes
		w.code(0, 5)    // distance code 0: distance 1
	}
	w.code(0, 7) // end of block
	return w.flush()
}

// crcZeros returns the CRC-32 of n zero bytes.
func crcZeros(n int64) uint32 {
	z := make([]byte, 1<<20)
	var c uint32
	for n > 0 {
		k := min(n, int64(len(z)))
		c = crc32.Update(c, crc32.IEEETable, z[:k])
		n -= k
	}
	return c
}

// DeflateBombZip returns a zip archive whose entry name inflates to n zero bytes (n-1 a
// multiple of 258), honestly declared in its headers, followed by the stored entries extra.
func DeflateBombZip(name string, n int64, extra ...ZipEntry) []byte {
	var buf bytes.Buffer
	w := zip.NewWriter(&buf)
	raw := DeflateZeros(n)
	f, err := w.CreateRaw(&zip.FileHeader{Name: name, Method: zip.Deflate, CRC32: crcZeros(n),
		CompressedSize64: uint64(len(raw)), UncompressedSize64: uint64(n)})
	if err != nil {
		panic(err)
	}
	if _, err := f.Write(raw); err != nil {
		panic(err)
	}
	for _, e := range extra {
		f, err := w.CreateHeader(&zip.FileHeader{Name: e.Name, Method: zip.Store})
		if err != nil {
			panic(err)
		}
		if _, err := f.Write(e.Data); err != nil {
			panic(err)
		}
	}
	if err := w.Close(); err != nil {
		panic(err)
	}
	return buf.Bytes()
}
