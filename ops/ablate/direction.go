package ablate

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"math/bits"
	"os"
	"path/filepath"
	"strings"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/codec"
	"github.com/weft-ml/weft/internal/text"
	"github.com/weft-ml/weft/ops"
	"github.com/weft-ml/weft/safetensors"
)

// maxDirectionElems bounds the size of a direction file (one vector per layer of a very
// large model is a few million values).
const maxDirectionElems = 1 << 24

// maxNPYHeader bounds a .npy header (numpy writes about a hundred bytes).
const maxNPYHeader = 1 << 16

// LoadDirection reads the direction(s) of --project-out: from a .npy file (recognised by
// its magic bytes) or a safetensors file holding exactly one floating-point tensor. The
// array is a vector [hidden] (or [1, hidden]), giving one direction, or a matrix
// [layers, hidden], giving one per layer. The vectors are returned as read, not normalised.
func LoadDirection(path string) ([][]float64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("ablate: %w", weft.PathError(err))
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("ablate: %w", weft.PathError(err))
	}
	magic := make([]byte, 6)
	n, _ := f.ReadAt(magic, 0)
	if bytes.Equal(magic[:n], []byte("\x93NUMPY")) {
		defer f.Close()
		shape, vals, err := ReadNPY(f, st.Size(), filepath.Base(path))
		if err != nil {
			return nil, err
		}
		return directionRows(filepath.Base(path), shape, vals)
	}
	f.Close()
	c, err := safetensors.OpenFile(path)
	if err != nil {
		return nil, fmt.Errorf("ablate: direction file %s is neither .npy nor safetensors: %v", path, err)
	}
	defer c.Close()
	if len(c.Tensors) != 1 {
		names := make([]string, len(c.Tensors))
		for i, t := range c.Tensors {
			names[i] = t.Name
		}
		return nil, fmt.Errorf("ablate: direction file %s holds %d tensors (%s); want exactly one, [hidden] or [layers, hidden]", path, len(c.Tensors), text.List(names, 4))
	}
	t := c.Tensors[0]
	if !t.DType.Float() {
		return nil, fmt.Errorf("ablate: direction file %s: tensor %q is %v; want a floating-point type", path, t.Name, t.DType)
	}
	ne, err := t.NumElements()
	if err != nil {
		return nil, fmt.Errorf("ablate: direction file %s: %v", path, err)
	}
	if ne > maxDirectionElems {
		return nil, fmt.Errorf("ablate: direction file %s: tensor %q has %d elements, more than the %d a direction may have", path, t.Name, ne, maxDirectionElems)
	}
	vals := make([]float64, ne)
	if ne > 0 && len(t.Shape) > 0 {
		if err := ops.ReadRowsF64(t, 0, t.Rows(), vals); err != nil {
			return nil, fmt.Errorf("ablate: direction file %s: %v", path, err)
		}
	}
	return directionRows(fmt.Sprintf("%s: tensor %q", filepath.Base(path), t.Name), t.Shape, vals)
}

// directionRows splits a [hidden] or [k, hidden] array into its vectors.
func directionRows(what string, shape []int64, vals []float64) ([][]float64, error) {
	var k, h int64
	switch len(shape) {
	case 1:
		k, h = 1, shape[0]
	case 2:
		k, h = shape[0], shape[1]
	default:
		return nil, fmt.Errorf("ablate: direction %s has shape %v; want [hidden] or [layers, hidden]", what, shape)
	}
	if k == 0 || h == 0 {
		return nil, fmt.Errorf("ablate: direction %s has shape %v, which holds no vector", what, shape)
	}
	out := make([][]float64, k)
	for i := range out {
		out[i] = vals[int64(i)*h : int64(i+1)*h]
	}
	return out, nil
}

// ReadNPY reads a NumPy .npy array from r (size bytes; name is used in errors): format
// versions 1 to 3, dtype float32 or float64 little-endian ('<f4', '<f8'), C order, at most
// 8 dimensions and 2^24 elements, with exactly as many data bytes as the shape says. It
// returns the shape and the values as float64. Anything else is an error: this is a strict
// reader, not numpy's.
func ReadNPY(r io.ReaderAt, size int64, name string) ([]int64, []float64, error) {
	errf := func(format string, args ...any) error {
		return fmt.Errorf("npy: %s: "+format, append([]any{name}, args...)...)
	}
	if size < 10 {
		return nil, nil, errf("%d bytes is too short for a .npy file", size)
	}
	pre := make([]byte, 12)
	n, err := r.ReadAt(pre[:min(int64(12), size)], 0)
	if int64(n) < min(12, size) {
		return nil, nil, errf("reading header: %v", err)
	}
	if !bytes.Equal(pre[:6], []byte("\x93NUMPY")) {
		return nil, nil, errf("not a .npy file (magic % x)", pre[:6])
	}
	major := pre[6]
	var hlen, start int64
	switch major {
	case 1:
		hlen, start = int64(binary.LittleEndian.Uint16(pre[8:])), 10
	case 2, 3:
		if size < 12 {
			return nil, nil, errf("%d bytes is too short for a version %d .npy file", size, major)
		}
		hlen, start = int64(binary.LittleEndian.Uint32(pre[8:])), 12
	default:
		return nil, nil, errf("unsupported format version %d.%d", major, pre[7])
	}
	if hlen > maxNPYHeader {
		return nil, nil, errf("header length %d exceeds the limit %d", hlen, maxNPYHeader)
	}
	if start+hlen > size {
		return nil, nil, errf("header length %d exceeds file size (%d)", hlen, size)
	}
	hdr := make([]byte, hlen)
	if n, err := r.ReadAt(hdr, start); int64(n) != hlen {
		return nil, nil, errf("reading header: %v", err)
	}
	d, err := parseNPYHeader(string(hdr))
	if err != nil {
		return nil, nil, errf("header %q: %v", clipStr(string(hdr), 120), err)
	}
	var item int64
	switch d.descr {
	case "<f4":
		item = 4
	case "<f8":
		item = 8
	default:
		return nil, nil, errf("dtype %q is not supported; want '<f4' or '<f8' (little-endian float32 or float64)", d.descr)
	}
	if len(d.shape) > weft.MaxDims {
		return nil, nil, errf("%d dimensions, at most %d allowed", len(d.shape), weft.MaxDims)
	}
	if d.fortran && len(d.shape) > 1 {
		return nil, nil, errf("fortran_order is True; want a C-order array (np.ascontiguousarray)")
	}
	count := uint64(1)
	for _, s := range d.shape {
		hi, lo := bits.Mul64(count, uint64(s))
		if hi != 0 || lo > maxDirectionElems {
			return nil, nil, errf("shape %v has more than %d elements", d.shape, maxDirectionElems)
		}
		count = lo
	}
	dataOff := start + hlen
	if want := int64(count) * item; size-dataOff != want {
		return nil, nil, errf("shape %v of %s needs %d data bytes, the file has %d after its header", d.shape, d.descr, want, size-dataOff)
	}
	raw := make([]byte, int64(count)*item)
	if n, err := r.ReadAt(raw, dataOff); n != len(raw) {
		return nil, nil, errf("reading data: %v", err)
	}
	vals := make([]float64, count)
	if item == 4 {
		err = codec.DecodeF64(weft.F32, raw, vals)
	} else {
		err = codec.DecodeF64(weft.F64, raw, vals)
	}
	if err != nil {
		return nil, nil, errf("%v", err)
	}
	return d.shape, vals, nil
}

type npyHeader struct {
	descr   string
	fortran bool
	shape   []int64
}

// parseNPYHeader parses the Python dict literal of a .npy header: exactly the keys descr
// (a string), fortran_order (True or False) and shape (a tuple of non-negative integers),
// followed by spaces and a newline.
func parseNPYHeader(s string) (*npyHeader, error) {
	p := &pyLit{s: s}
	if !p.eat('{') {
		return nil, fmt.Errorf("does not start with '{'")
	}
	d := &npyHeader{}
	seen := map[string]bool{}
	for {
		if p.eat('}') {
			break
		}
		key, err := p.str()
		if err != nil {
			return nil, err
		}
		if seen[key] {
			return nil, fmt.Errorf("key %q repeated", key)
		}
		seen[key] = true
		if !p.eat(':') {
			return nil, fmt.Errorf("missing ':' after key %q", key)
		}
		switch key {
		case "descr":
			if d.descr, err = p.str(); err != nil {
				return nil, fmt.Errorf("descr: %v", err)
			}
		case "fortran_order":
			switch {
			case p.word("True"):
				d.fortran = true
			case p.word("False"):
			default:
				return nil, fmt.Errorf("fortran_order is not True or False")
			}
		case "shape":
			if d.shape, err = p.tuple(); err != nil {
				return nil, fmt.Errorf("shape: %v", err)
			}
		default:
			return nil, fmt.Errorf("unexpected key %q", key)
		}
		if p.eat(',') {
			continue
		}
		if !p.eat('}') {
			return nil, fmt.Errorf("missing ',' or '}' after %q", key)
		}
		break
	}
	for _, k := range []string{"descr", "fortran_order", "shape"} {
		if !seen[k] {
			return nil, fmt.Errorf("missing key %q", k)
		}
	}
	rest := s[p.i:]
	if strings.TrimRight(rest, " \n") != "" {
		return nil, fmt.Errorf("unexpected %q after the dict", clipStr(rest, 20))
	}
	if !strings.HasSuffix(s, "\n") {
		return nil, fmt.Errorf("does not end with a newline")
	}
	return d, nil
}

// pyLit scans the few Python literals a .npy header holds.
type pyLit struct {
	s string
	i int
}

func (p *pyLit) space() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\t') {
		p.i++
	}
}

func (p *pyLit) eat(c byte) bool {
	p.space()
	if p.i < len(p.s) && p.s[p.i] == c {
		p.i++
		return true
	}
	return false
}

func (p *pyLit) word(w string) bool {
	p.space()
	if strings.HasPrefix(p.s[p.i:], w) {
		p.i += len(w)
		return true
	}
	return false
}

func (p *pyLit) str() (string, error) {
	p.space()
	if p.i >= len(p.s) || (p.s[p.i] != '\'' && p.s[p.i] != '"') {
		return "", fmt.Errorf("expected a quoted string at offset %d", p.i)
	}
	q := p.s[p.i]
	end := strings.IndexByte(p.s[p.i+1:], q)
	if end < 0 {
		return "", fmt.Errorf("unterminated string at offset %d", p.i)
	}
	v := p.s[p.i+1 : p.i+1+end]
	if strings.ContainsRune(v, '\\') {
		return "", fmt.Errorf("escape sequences are not supported in %q", v)
	}
	p.i += end + 2
	return v, nil
}

func (p *pyLit) tuple() ([]int64, error) {
	if !p.eat('(') {
		return nil, fmt.Errorf("expected '('")
	}
	out := []int64{}
	for {
		if p.eat(')') {
			return out, nil
		}
		p.space()
		j := p.i
		for j < len(p.s) && p.s[j] >= '0' && p.s[j] <= '9' {
			j++
		}
		if j == p.i {
			return nil, fmt.Errorf("expected a non-negative integer at offset %d", p.i)
		}
		if j-p.i > 12 {
			return nil, fmt.Errorf("dimension %s is too large", p.s[p.i:j])
		}
		var v int64
		for _, c := range p.s[p.i:j] {
			v = v*10 + int64(c-'0')
		}
		if len(out) >= weft.MaxDims {
			return nil, fmt.Errorf("more than %d dimensions", weft.MaxDims)
		}
		out = append(out, v)
		p.i = j
		if p.eat(',') {
			continue
		}
		if !p.eat(')') {
			return nil, fmt.Errorf("missing ',' or ')' at offset %d", p.i)
		}
		if len(out) == 1 {
			// Python writes a 1-tuple as (n,); "(n)" is just a parenthesised number.
			return nil, fmt.Errorf("a one-element tuple needs a trailing comma: (%d,)", out[0])
		}
		return out, nil
	}
}

func clipStr(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// normalize returns v / |v|, computed in float64; a zero or non-finite vector is an error.
func normalize(v []float64) ([]float64, error) {
	var ss float64
	scale := 0.0
	for _, x := range v {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil, fmt.Errorf("holds a non-finite value (%v)", x)
		}
		scale = math.Max(scale, math.Abs(x))
	}
	if scale == 0 {
		return nil, fmt.Errorf("is zero")
	}
	for _, x := range v {
		y := x / scale
		ss += y * y
	}
	norm := scale * math.Sqrt(ss)
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = x / norm
	}
	return out, nil
}
