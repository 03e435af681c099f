package gguf

import (
	"errors"

	"github.com/weft-ml/weft/internal/ferr"
)

// The classes of the errors a GGUF reader returns. Every error Read and Open return about
// a file's content wraps exactly one of them, so that callers and tests tell them apart
// with errors.Is; the error's own text names the file, the key or tensor and the numbers.
// Errors of the file system or the network wrap their cause instead.
var (
	// ErrTruncated is a file that ends before what its header describes: a count, a
	// string, an array or a tensor that runs past the end of the file.
	ErrTruncated = errors.New("gguf: truncated file")
	// ErrMalformed is a file that is not GGUF or breaks the format's rules: a wrong magic,
	// duplicate keys or tensor names, misaligned or overlapping offsets, a shape that
	// overflows, the parts of a split model that disagree.
	ErrMalformed = errors.New("gguf: malformed file")
	// ErrUnsupported is a file of a kind weft does not read, though it may be valid for
	// another reader: a big-endian file, GGUF version 1 or a future version, a tensor type
	// this build does not know, nested arrays.
	ErrUnsupported = errors.New("gguf: unsupported file")
	// ErrTooLarge is a size past the limits a reader sets before allocating: a string or an
	// array longer than ggml accepts (MaxStringLen, MaxArrayLen).
	ErrTooLarge = errors.New("gguf: size over the reader's limit")
	// ErrNotFirstPart is a later part of a split model given where the model is opened:
	// the first part brings the others.
	ErrNotFirstPart = errors.New("gguf: not the first part of a split model")
)

// classed returns an error of the given class whose message is fmt.Errorf(format, args...).
func classed(class error, format string, args ...any) error {
	return ferr.New(class, format, args...)
}
