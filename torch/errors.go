package torch

import (
	"errors"
	"fmt"

	"github.com/weft-ml/weft/internal/ferr"
)

// The classes of the errors the readers return. Every error Read, Open and OpenDir return
// about a file's content wraps exactly one of them, so that callers and tests tell them
// apart with errors.Is; the error's own text names the file, the tensor or storage and the
// numbers. Errors of the file system or the network wrap their cause instead.
var (
	// ErrTruncated is a file that ends before what it describes: a zip archive without its
	// central directory, a pickle without its STOP opcode, a storage past the end of the
	// file.
	ErrTruncated = errors.New("torch: truncated file")
	// ErrMalformed is a file that is not a PyTorch checkpoint or breaks the format's rules:
	// a zip archive without data.pkl, an invalid pickle, storages that disagree with the
	// pickle, duplicate names, an index that disagrees with its shards.
	ErrMalformed = errors.New("torch: malformed file")
	// ErrUnsupported is a checkpoint weft does not read, though torch may: the tar format
	// of torch < 0.4, big-endian storages, compressed storages, broadcast views, a pickle
	// whose top level is not a state dict.
	ErrUnsupported = errors.New("torch: unsupported checkpoint")
	// ErrTooLarge is a size past the limits a reader sets before allocating: a data.pkl
	// over its limit, a pickle that pushes, memoizes or nests more than weft allows.
	ErrTooLarge = errors.New("torch: size over the reader's limit")
	// ErrDisallowed is a pickle that names a callable or an object outside the whitelist
	// of tensors and state dicts (os.system, builtins.eval, ...), or uses pickle features
	// that could run code. Nothing is ever executed; the file is refused.
	ErrDisallowed = errors.New("torch: pickle names objects weft does not load")
)

// classes are the error classes, for ferr.Class.
var classes = []error{ErrTruncated, ErrMalformed, ErrUnsupported, ErrTooLarge, ErrDisallowed}

// classed returns an error of the given class whose message is fmt.Errorf(format, args...).
func classed(class error, format string, args ...any) error {
	return ferr.New(class, format, args...)
}

// inFile returns err prefixed with the file's name, as ErrMalformed unless it already has
// a class.
func inFile(name string, err error) error {
	return ferr.Class(fmt.Errorf("%s: %w", name, err), ErrMalformed, classes...)
}
