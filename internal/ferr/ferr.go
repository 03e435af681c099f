// Package ferr makes the errors of the format readers: a message that names the file, the
// key or tensor and the numbers, wrapping one class (a sentinel such as gguf.ErrTruncated)
// that callers and tests check with errors.Is, and the cause when there is one.
package ferr

import (
	"errors"
	"fmt"
)

// classedError is an error message of one class.
type classedError struct {
	class error
	err   error
}

func (e *classedError) Error() string { return e.err.Error() }

// Unwrap returns the class and the error the message was made from (which may wrap a cause
// given with %w).
func (e *classedError) Unwrap() []error { return []error{e.class, e.err} }

// New returns an error of the given class whose message is fmt.Errorf(format, args...); %w
// keeps a cause. A nil class returns the plain error.
func New(class error, format string, args ...any) error {
	err := fmt.Errorf(format, args...)
	if class == nil {
		return err
	}
	return &classedError{class: class, err: err}
}

// Class returns err with class added unless err is nil or already of one of classes.
func Class(err, class error, classes ...error) error {
	if err == nil {
		return nil
	}
	for _, c := range classes {
		if errors.Is(err, c) {
			return err
		}
	}
	return &classedError{class: class, err: err}
}
