package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"sort"
	"strconv"
	"unicode/utf8"

	"github.com/weft-ml/weft"
)

// MaxHeaderSize is the largest JSON header, in bytes, that Read accepts: the limit of the
// reference Rust crate (100 MB), which also refuses to write a larger one.
const MaxHeaderSize = 100_000_000

// metadataKey is the header key that holds the free-form string map.
const metadataKey = "__metadata__"

// Entry is one tensor of a safetensors file: its description and where its data lives.
type Entry struct {
	weft.TensorInfo
	// Offset is the absolute offset, in the file, of the tensor's first byte.
	Offset int64
	// Length is the number of bytes of the tensor's data (its Size()).
	Length int64
}

// File is a parsed and validated safetensors header.
type File struct {
	// Metadata is the header's __metadata__ map; it is empty, never nil, when absent.
	Metadata map[string]string
	// Tensors lists the tensors in data-offset order, which is the order of their bytes in
	// the file (not necessarily the order of the keys in the JSON header).
	Tensors []Entry
	// HeaderSize is 8 + N: the length prefix plus the JSON header, i.e. the offset at which
	// the data section starts.
	HeaderSize int64
}

// Read parses and validates the header of a safetensors file of the given size read
// through r; name is used in error messages only. It refuses what the reference Rust crate
// refuses (headers over MaxHeaderSize or past the end of the file, invalid UTF-8 or JSON,
// unknown dtypes, sizes that disagree with dtype x shape, overlapping, gapped or out of
// range offsets, data not exactly covering the rest of the file) and, beyond it, duplicate
// keys, empty tensor names and headers that do not start with '{'. The header may be
// padded with trailing whitespace. Read reads only the header, never tensor data.
func Read(r io.ReaderAt, size int64, name string) (*File, error) {
	return read(r, size, name, nil)
}

// read is Read that also feeds the header bytes [0, 8+N) to h when h is not nil.
func read(r io.ReaderAt, size int64, name string, h hash.Hash) (*File, error) {
	errf := func(class error, format string, args ...any) error {
		return classed(class, "%s: "+format, append([]any{name}, args...)...)
	}
	if size < 8 {
		return nil, errf(ErrTruncated, "file is %d bytes, too short for the 8-byte header length", size)
	}
	var prefix [8]byte
	if err := readFullAt(r, prefix[:], 0); err != nil {
		return nil, errf(nil, "reading header length: %w", err)
	}
	n := binary.LittleEndian.Uint64(prefix[:])
	if n > MaxHeaderSize {
		return nil, errf(ErrTooLarge, "header length %d exceeds the %d-byte limit", n, MaxHeaderSize)
	}
	if n > uint64(size-8) {
		return nil, errf(ErrTruncated, "header length %d exceeds the %d bytes after the length prefix (file is %d bytes)", n, size-8, size)
	}
	hdr := make([]byte, n)
	if err := readFullAt(r, hdr, 8); err != nil {
		return nil, errf(nil, "reading %d-byte header: %w", n, err)
	}
	if h != nil {
		h.Write(prefix[:])
		h.Write(hdr)
	}
	meta, raws, err := parseHeader(hdr)
	if err != nil {
		return nil, errf(nil, "%w", malformed(err))
	}
	headerSize := int64(8 + n)
	ents, err := validate(raws, size-headerSize, headerSize)
	if err != nil {
		return nil, errf(nil, "%w", malformed(err))
	}
	return &File{Metadata: meta, Tensors: ents, HeaderSize: headerSize}, nil
}

// readFullAt fills buf from r at off.
func readFullAt(r io.ReaderAt, buf []byte, off int64) error {
	n, err := r.ReadAt(buf, off)
	if n == len(buf) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// rawEntry is a tensor entry as written in the header, before validation.
type rawEntry struct {
	name       string
	dtype      weft.DType
	shape      []int64
	begin, end uint64
}

// parseHeader decodes the JSON header, refusing duplicate keys, which encoding/json's
// Unmarshal would silently collapse.
func parseHeader(hdr []byte) (map[string]string, []rawEntry, error) {
	if !utf8.Valid(hdr) {
		i := 0
		for i < len(hdr) {
			r, w := utf8.DecodeRune(hdr[i:])
			if r == utf8.RuneError && w <= 1 {
				break
			}
			i += w
		}
		return nil, nil, fmt.Errorf("header is not valid UTF-8 (bad byte 0x%02x at header byte %d)", hdr[i], i)
	}
	if len(hdr) == 0 {
		return nil, nil, errors.New("header is empty: expected a JSON object")
	}
	if hdr[0] != '{' {
		return nil, nil, fmt.Errorf("header starts with %q, not '{': expected a JSON object", rune(hdr[0]))
	}
	dec := json.NewDecoder(bytes.NewReader(hdr))
	dec.UseNumber()
	if _, err := dec.Token(); err != nil { // the '{' checked above
		return nil, nil, jsonErr(err)
	}
	meta := map[string]string{}
	var ents []rawEntry
	seen := map[string]struct{}{}
	sawMeta := false
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, nil, jsonErr(err)
		}
		key, ok := tok.(string)
		if !ok {
			return nil, nil, fmt.Errorf("header is not valid JSON: unexpected %v", tok)
		}
		if key == metadataKey {
			if sawMeta {
				return nil, nil, fmt.Errorf("duplicate %s key", metadataKey)
			}
			sawMeta = true
			if err := parseMetadata(dec, meta); err != nil {
				return nil, nil, err
			}
			continue
		}
		if key == "" {
			return nil, nil, errors.New("empty tensor name")
		}
		if _, dup := seen[key]; dup {
			return nil, nil, fmt.Errorf("duplicate tensor name %q", key)
		}
		seen[key] = struct{}{}
		e, err := parseTensor(dec, key)
		if err != nil {
			return nil, nil, err
		}
		ents = append(ents, e)
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return nil, nil, jsonErr(err)
	}
	off := dec.InputOffset()
	for i := off; i < int64(len(hdr)); i++ {
		switch hdr[i] {
		case ' ', '\t', '\n', '\r':
		default:
			return nil, nil, fmt.Errorf("header has %q after its JSON object at header byte %d (only whitespace padding is allowed)", rune(hdr[i]), i)
		}
	}
	// encoding/json turns an unpaired UTF-16 surrogate escape into U+FFFD, which would
	// silently rename a tensor; serde_json (the reference) refuses it, and so do we.
	if err := checkSurrogates(hdr[:off]); err != nil {
		return nil, nil, err
	}
	return meta, ents, nil
}

// jsonErr wraps a decoder error.
func jsonErr(err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return errors.New("header is not valid JSON: unexpected end of header")
	}
	return fmt.Errorf("header is not valid JSON: %v", err)
}

// parseMetadata reads the value of __metadata__: an object of strings, or null.
func parseMetadata(dec *json.Decoder, meta map[string]string) error {
	tok, err := dec.Token()
	if err != nil {
		return jsonErr(err)
	}
	if tok == nil { // null: the reference reads it as no metadata
		return nil
	}
	if tok != json.Delim('{') {
		return fmt.Errorf("%s is %s, not an object of strings", metadataKey, describe(tok))
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return jsonErr(err)
		}
		key, _ := tok.(string)
		if _, dup := meta[key]; dup {
			return fmt.Errorf("%s: duplicate key %q", metadataKey, key)
		}
		tok, err = dec.Token()
		if err != nil {
			return jsonErr(err)
		}
		s, ok := tok.(string)
		if !ok {
			return fmt.Errorf("%s: key %q has %s value, not a string", metadataKey, key, describe(tok))
		}
		meta[key] = s
	}
	if _, err := dec.Token(); err != nil {
		return jsonErr(err)
	}
	return nil
}

// parseTensor reads one tensor entry {"dtype": ..., "shape": [...], "data_offsets": [b, e]}.
// Unknown fields are skipped, as serde does for the reference crate.
func parseTensor(dec *json.Decoder, name string) (rawEntry, error) {
	e := rawEntry{name: name}
	tok, err := dec.Token()
	if err != nil {
		return e, jsonErr(err)
	}
	if tok != json.Delim('{') {
		return e, fmt.Errorf("tensor %q: entry is %s, not an object", name, describe(tok))
	}
	var haveDType, haveShape, haveOffsets bool
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return e, jsonErr(err)
		}
		field, _ := tok.(string)
		switch field {
		case "dtype":
			if haveDType {
				return e, fmt.Errorf("tensor %q: duplicate field %q", name, field)
			}
			haveDType = true
			tok, err := dec.Token()
			if err != nil {
				return e, jsonErr(err)
			}
			s, ok := tok.(string)
			if !ok {
				return e, fmt.Errorf("tensor %q: dtype is %s, not a string", name, describe(tok))
			}
			d, ok := weft.FromSafetensors(s)
			if !ok {
				return e, classed(ErrUnsupported, "tensor %q: unknown dtype %q", name, s)
			}
			e.dtype = d
		case "shape":
			if haveShape {
				return e, fmt.Errorf("tensor %q: duplicate field %q", name, field)
			}
			haveShape = true
			e.shape = []int64{}
			err := readUintArray(dec, func(i int, v uint64) error {
				if i >= weft.MaxDims {
					return fmt.Errorf("tensor %q: shape has more than %d dimensions", name, weft.MaxDims)
				}
				if v > 1<<63-1 {
					return fmt.Errorf("tensor %q: dimension %d of the shape is %d, too large", name, i, v)
				}
				e.shape = append(e.shape, int64(v))
				return nil
			}, name, "shape")
			if err != nil {
				return e, err
			}
		case "data_offsets":
			if haveOffsets {
				return e, fmt.Errorf("tensor %q: duplicate field %q", name, field)
			}
			haveOffsets = true
			count := 0
			err := readUintArray(dec, func(i int, v uint64) error {
				count++
				switch i {
				case 0:
					e.begin = v
				case 1:
					e.end = v
				default:
					return fmt.Errorf("tensor %q: data_offsets has more than 2 values", name)
				}
				return nil
			}, name, "data_offsets")
			if err != nil {
				return e, err
			}
			if count != 2 {
				return e, fmt.Errorf("tensor %q: data_offsets has %d values, want 2", name, count)
			}
		default:
			// The value of a field of a tensor entry is at level 3: the header object,
			// the entry, the value.
			if err := skipValue(dec, 3); err != nil {
				return e, fmt.Errorf("tensor %q: field %q: %w", name, field, err)
			}
		}
	}
	if _, err := dec.Token(); err != nil {
		return e, jsonErr(err)
	}
	switch {
	case !haveDType:
		return e, fmt.Errorf("tensor %q: missing dtype", name)
	case !haveShape:
		return e, fmt.Errorf("tensor %q: missing shape", name)
	case !haveOffsets:
		return e, fmt.Errorf("tensor %q: missing data_offsets", name)
	}
	return e, nil
}

// readUintArray reads a JSON array of non-negative integers, calling f for each.
func readUintArray(dec *json.Decoder, f func(int, uint64) error, name, field string) error {
	tok, err := dec.Token()
	if err != nil {
		return jsonErr(err)
	}
	if tok != json.Delim('[') {
		return fmt.Errorf("tensor %q: %s is %s, not an array", name, field, describe(tok))
	}
	for i := 0; dec.More(); i++ {
		tok, err := dec.Token()
		if err != nil {
			return jsonErr(err)
		}
		num, ok := tok.(json.Number)
		if !ok {
			return fmt.Errorf("tensor %q: %s[%d] is %s, not an integer", name, field, i, describe(tok))
		}
		v, err := strconv.ParseUint(string(num), 10, 64)
		if err != nil {
			if iv, ierr := strconv.ParseInt(string(num), 10, 64); ierr == nil && iv < 0 {
				if field == "shape" {
					return fmt.Errorf("tensor %q: negative dimension %d in shape", name, iv)
				}
				return fmt.Errorf("tensor %q: negative %s value %d", name, field, iv)
			}
			return fmt.Errorf("tensor %q: %s[%d] is %s, not a non-negative 64-bit integer", name, field, i, num)
		}
		if err := f(i, v); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil {
		return jsonErr(err)
	}
	return nil
}

// maxJSONDepth is the deepest nesting of JSON arrays and objects Read and the index reader
// accept, counting the outermost object as level 1: serde_json, which the reference crate
// and the Hugging Face libraries parse with, refuses a 128th level. Without a limit a header
// of a few MiB of '[' would make encoding/json keep millions of levels.
const maxJSONDepth = 127

// skipValue consumes one JSON value that sits depth levels deep (inside depth-1 open
// arrays or objects), refusing nesting past maxJSONDepth.
func skipValue(dec *json.Decoder, depth int) error {
	open := 0
	for {
		tok, err := dec.Token()
		if err != nil {
			return jsonErr(err)
		}
		if d, ok := tok.(json.Delim); ok {
			if d == '{' || d == '[' {
				open++
				if depth+open-1 > maxJSONDepth {
					return classed(ErrTooLarge, "JSON nested %d levels deep at byte %d, deeper than the %d allowed (serde_json's recursion limit)", depth+open-1, dec.InputOffset(), maxJSONDepth)
				}
			} else {
				open--
			}
		}
		if open == 0 {
			return nil
		}
	}
}

// describe names the kind of a JSON token for messages.
func describe(tok json.Token) string {
	switch v := tok.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case json.Number:
		return "a number (" + string(v) + ")"
	case string:
		return "a string"
	case json.Delim:
		switch v {
		case '{':
			return "an object"
		case '[':
			return "an array"
		}
	}
	return fmt.Sprintf("%v", tok)
}

// checkSurrogates refuses \u escapes that encode an unpaired UTF-16 surrogate.
func checkSurrogates(b []byte) error {
	in := false
	for i := 0; i < len(b); i++ {
		c := b[i]
		if !in {
			if c == '"' {
				in = true
			}
			continue
		}
		switch c {
		case '"':
			in = false
		case '\\':
			if i+1 < len(b) && b[i+1] == 'u' {
				v, ok := hex4(b, i+2)
				if ok && v >= 0xD800 && v < 0xDC00 {
					if lo, ok := hex4(b, i+8); ok && b[i+6] == '\\' && b[i+7] == 'u' && lo >= 0xDC00 && lo < 0xE000 {
						i += 11
						continue
					}
					return fmt.Errorf("header has an unpaired UTF-16 surrogate escape \\u%04x at header byte %d", v, i)
				}
				if ok && v >= 0xDC00 && v < 0xE000 {
					return fmt.Errorf("header has an unpaired UTF-16 surrogate escape \\u%04x at header byte %d", v, i)
				}
			}
			i++ // skip the escaped character
		}
	}
	return nil
}

// hex4 decodes the four hex digits at b[i:i+4].
func hex4(b []byte, i int) (int, bool) {
	if i < 0 || i+4 > len(b) {
		return 0, false
	}
	v, err := strconv.ParseUint(string(b[i:i+4]), 16, 16)
	return int(v), err == nil
}

// validate checks entries as the reference crate's Metadata::validate does: each size
// agrees with dtype x shape, offsets sorted by begin are contiguous from 0, and the last end
// is the data length. It returns the entries in data-offset order with absolute offsets.
func validate(raws []rawEntry, dataLen, headerSize int64) ([]Entry, error) {
	for _, r := range raws {
		if r.begin > r.end {
			return nil, fmt.Errorf("tensor %q: data_offsets [%d, %d] begin after they end", r.name, r.begin, r.end)
		}
		if r.end > uint64(dataLen) {
			return nil, classed(ErrTruncated, "tensor %q: data_offsets [%d, %d] out of range: the data section is %d bytes", r.name, r.begin, r.end, dataLen)
		}
		info := weft.TensorInfo{Name: r.name, DType: r.dtype, Shape: r.shape}
		n, err := info.Size()
		if err != nil {
			return nil, err
		}
		if got := r.end - r.begin; got != uint64(n) {
			return nil, fmt.Errorf("tensor %q: data_offsets [%d, %d] hold %d bytes but %v %v needs %d", r.name, r.begin, r.end, got, r.dtype, r.shape, n)
		}
	}
	sorted := make([]int, len(raws))
	for i := range sorted {
		sorted[i] = i
	}
	sort.SliceStable(sorted, func(a, b int) bool {
		x, y := &raws[sorted[a]], &raws[sorted[b]]
		return x.begin < y.begin || (x.begin == y.begin && x.end < y.end)
	})
	ents := make([]Entry, 0, len(raws))
	var prev uint64
	prevName := ""
	for _, i := range sorted {
		r := &raws[i]
		if r.begin < prev {
			return nil, fmt.Errorf("tensor %q: data_offsets [%d, %d] overlap tensor %q, which ends at %d", r.name, r.begin, r.end, prevName, prev)
		}
		if r.begin > prev {
			if prevName == "" {
				return nil, fmt.Errorf("gap of %d bytes at the start of the data section: first tensor %q begins at data offset %d", r.begin-prev, r.name, r.begin)
			}
			return nil, fmt.Errorf("gap of %d bytes between tensor %q (ends at %d) and tensor %q (begins at %d)", r.begin-prev, prevName, prev, r.name, r.begin)
		}
		prev, prevName = r.end, r.name
		ents = append(ents, Entry{
			TensorInfo: weft.TensorInfo{Name: r.name, DType: r.dtype, Shape: r.shape},
			Offset:     headerSize + int64(r.begin),
			Length:     int64(r.end - r.begin),
		})
	}
	if prev != uint64(dataLen) {
		return nil, fmt.Errorf("the data section is %d bytes but the tensors cover only %d (%d bytes unaccounted for at the end)", dataLen, prev, uint64(dataLen)-prev)
	}
	return ents, nil
}
