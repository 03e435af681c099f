package weft

import (
	"errors"
	"fmt"
	"strings"
)

// OptionError is a parameter of an operation whose value is invalid, by itself (a negative
// standard deviation, an unknown distribution) or for the inputs (a head past the layer's
// head count, a token id past the vocabulary). Option is the parameter's name as the op's
// JSON parameters spell it ("std", "alpha_for", "tokens"; several separated by ", " when
// the error is about how they combine); a command-line front end names its flags instead,
// and treats every OptionError as a usage error.
type OptionError struct {
	// Option names the parameter (or parameters, joined by ", ").
	Option string
	// Value is the value as given, or "" when the message does not repeat it.
	Value string
	// Err says what is wrong.
	Err error
}

// Error returns "option: what is wrong", or "option=value: what is wrong".
func (e *OptionError) Error() string {
	if e.Value == "" {
		return e.Option + ": " + e.Err.Error()
	}
	return e.Option + "=" + e.Value + ": " + e.Err.Error()
}

// Unwrap returns the reason.
func (e *OptionError) Unwrap() error { return e.Err }

// Optionf returns an *OptionError for option with a message made by fmt.Errorf.
func Optionf(option, format string, args ...any) error {
	return &OptionError{Option: option, Err: fmt.Errorf(format, args...)}
}

// OptionValuef returns an *OptionError for option given value.
func OptionValuef(option, value, format string, args ...any) error {
	return &OptionError{Option: option, Value: value, Err: fmt.Errorf(format, args...)}
}

// Hint is a parameter setting that would avoid an error: Option set to Value (which may be
// "" for a boolean, or list choices as "a|b") Does something.
type Hint struct {
	Option string
	Value  string
	Does   string
}

// HintError is an error that suggests parameters that would avoid it. Its message lists
// them by their parameter names; a command-line front end names its flags instead.
type HintError struct {
	Err   error
	Hints []Hint
}

// Error returns the error's message followed by its hints in parentheses:
// "... (missing=base keeps the base's tensor set)".
func (e *HintError) Error() string { return e.Err.Error() + e.Render(nil) }

// Render returns the hints in parentheses, with a leading space, each option with its
// value written by ref (nil: "option=value", or "option" when there is no value).
func (e *HintError) Render(ref func(option, value string) string) string {
	if len(e.Hints) == 0 {
		return ""
	}
	if ref == nil {
		ref = func(option, value string) string {
			if value == "" {
				return option
			}
			return option + "=" + value
		}
	}
	parts := make([]string, len(e.Hints))
	for i, h := range e.Hints {
		parts[i] = ref(h.Option, h.Value) + " " + h.Does
	}
	return " (" + strings.Join(parts, "; ") + ")"
}

// Unwrap returns the error without its hints.
func (e *HintError) Unwrap() error { return e.Err }

// IsOptionError reports whether err is, or wraps, an *OptionError.
func IsOptionError(err error) bool {
	var oe *OptionError
	return errors.As(err, &oe)
}
