package safetensors

import (
	"errors"

	"github.com/weft-ml/weft/internal/ferr"
)

// The classes of the errors the readers return. Every error Read, OpenFile and OpenDir
// return about a file's content wraps exactly one of them, so that callers and tests tell
// them apart with errors.Is; the error's own text names the file, the tensor or key and the
// numbers. Errors of the file system or the network wrap their cause instead.
var (
	// ErrTruncated is a file that ends before what its header describes: a header length
	// or data offsets past the end of the file.
	ErrTruncated = errors.New("safetensors: truncated file")
	// ErrMalformed is a file or index that breaks the format's rules: invalid JSON or
	// UTF-8, duplicate names or keys, sizes that disagree with dtype x shape, overlapping or
	// gapped offsets, bytes no tensor accounts for, an index that disagrees with its shards.
	ErrMalformed = errors.New("safetensors: malformed file")
	// ErrUnsupported is content weft does not read, though another reader may: a dtype
	// this build does not know.
	ErrUnsupported = errors.New("safetensors: unsupported content")
	// ErrTooLarge is a size past the limits a reader sets before allocating: a header over
	// MaxHeaderSize, an index over its limit, JSON nested deeper than serde_json allows.
	ErrTooLarge = errors.New("safetensors: size over the reader's limit")
)

// classes are the error classes, for ferr.Class.
var classes = []error{ErrTruncated, ErrMalformed, ErrUnsupported, ErrTooLarge}

// classed returns an error of the given class whose message is fmt.Errorf(format, args...).
func classed(class error, format string, args ...any) error {
	return ferr.New(class, format, args...)
}

// malformed returns err as ErrMalformed unless it already has a class.
func malformed(err error) error { return ferr.Class(err, ErrMalformed, classes...) }
