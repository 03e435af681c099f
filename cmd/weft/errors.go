package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/ckpt"
	"github.com/weft-ml/weft/ops"
)

// Exit statuses.
const (
	exitOK          = 0
	exitData        = 1 // data and I/O errors: a corrupt input, a failed read or write
	exitUsage       = 2 // an invalid argument or value, or arguments that cannot go together
	exitInterrupted = 130
)

// usageError is an error in how a command was called: exit status 2. It wraps err, whose
// message it prints.
type usageError struct{ err error }

func (u *usageError) Error() string { return u.err.Error() }
func (u *usageError) Unwrap() error { return u.err }

// usagef returns a usage error; %w in format keeps a cause.
func usagef(format string, args ...any) error {
	return &usageError{fmt.Errorf(format, args...)}
}

// errHelp is returned when --help was asked for: usage is printed and the exit status is 0.
var errHelp = errors.New("help requested")

// isUsage reports whether err is a mistake in the command line rather than in the data: a
// usage error of the CLI; an invalid option value an op refused (*weft.OptionError), such
// as a head or token past the model's or a type or alpha rule that matches no tensor; an
// output type that cannot be written (*ops.RequestError); or an output path that names no
// output (-o ., -o x.pt). An output that exists, would overwrite an input, would lose data
// or cannot represent the input is about the files, not the command line: exit 1, with
// the flag that changes it when there is one (hint).
func isUsage(err error) bool {
	var ue *usageError
	var oe *weft.OptionError
	var re *ops.RequestError
	switch {
	case errors.As(err, &ue), errors.As(err, &oe), errors.As(err, &re):
		return true
	}
	for _, e := range []error{ops.ErrUnmatchedRule, ckpt.ErrOutputName} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// report prints the error of command name (nil: nothing) in weft's one form and returns the
// exit status: "weft CMD: what is wrong" on one line for a usage mistake, followed by
// "; see 'weft CMD --help'"; "weft CMD: FILE: what is wrong" for a data or I/O error, with
// the flag that would change it; "weft CMD: interrupted" when a signal stopped the command.
func report(e *env, c *command, err error) int {
	name := c.name
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, errHelp):
		printUsage(e.stdout, c)
		return exitOK
	case errors.Is(err, context.Canceled):
		if e.writing {
			fmt.Fprintf(e.stderr, "weft %s: interrupted; nothing was written\n", name)
		} else {
			fmt.Fprintf(e.stderr, "weft %s: interrupted\n", name)
		}
		return exitInterrupted
	}
	msg := message(e, name, err)
	if isUsage(err) {
		// One line: the message's first line, and where the help is.
		if i := strings.IndexByte(msg, '\n'); i >= 0 {
			msg = msg[:i]
		}
		fmt.Fprintf(e.stderr, "weft %s: %s; see 'weft %s --help'\n", name, msg, name)
		return exitUsage
	}
	fmt.Fprintf(e.stderr, "weft %s: %s%s\n", name, msg, hint(err))
	return exitData
}

// message renders err for the command line: parameters an op names (weft.OptionError,
// weft.HintError) become the command's flags, and a leading "NAME: " that repeats the
// command's name is dropped.
func message(e *env, name string, err error) string {
	msg := err.Error()
	walk(err, func(x error) {
		switch x := x.(type) {
		case *weft.HintError:
			msg = strings.Replace(msg, x.Render(nil), x.Render(func(opt, val string) string { return e.flagRef(opt, val) }), 1)
		case *weft.OptionError:
			old := x.Option + ": "
			if x.Value != "" {
				old = x.Option + "=" + x.Value + ": "
			}
			msg = strings.Replace(msg, old, e.flagRef(x.Option, x.Value)+": ", 1)
		}
	})
	msg = strings.TrimPrefix(msg, name+": ")
	return msg
}

// walk calls f on err and every error it wraps, outermost first.
func walk(err error, f func(error)) {
	if err == nil {
		return
	}
	f(err)
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		walk(u.Unwrap(), f)
	case interface{ Unwrap() []error }:
		for _, x := range u.Unwrap() {
			walk(x, f)
		}
	}
}

// flagRef names the flags of an op's parameter (or of several, joined by ", ") with their
// value: "std" and "-1" become "--std -1".
func (e *env) flagRef(option, value string) string {
	var names []string
	for _, o := range strings.Split(option, ", ") {
		names = append(names, "--"+e.flagName(o))
	}
	s := strings.Join(names, ", ")
	if value != "" {
		s += " " + quoteArg(value)
	}
	return s
}

// flagName is the flag of an op's parameter: the command's own spelling when it set one
// (env.flags), else the last element of a dotted name with '_' as '-' ("project_out.layers"
// is --layers, "alpha_for" --alpha-for).
func (e *env) flagName(option string) string {
	if f, ok := e.flags[option]; ok {
		return f
	}
	if i := strings.LastIndexByte(option, '.'); i >= 0 {
		option = option[i+1:]
	}
	return strings.ReplaceAll(option, "_", "-")
}

// spell records that the command spells an op's parameter as the flag --flag.
func (e *env) spell(option, flag string) {
	if e.flags == nil {
		e.flags = map[string]string{}
	}
	e.flags[option] = flag
}

// quoteArg quotes a value for a message when it would not read back as one shell word.
func quoteArg(s string) string {
	if s == "" || strings.ContainsAny(s, " \t\n\"'\\$`;&|<>(){}*?") {
		return strconv.Quote(s)
	}
	return s
}

// flagError turns the flag package's messages into weft's: "flag provided but not
// defined: -x" is "unknown flag --x", "invalid value "y" for flag -x: ..." is "--x y: ...".
func flagError(fs *flag.FlagSet, err error) error {
	msg := err.Error()
	switch {
	case strings.HasPrefix(msg, "flag provided but not defined: "):
		f := strings.TrimLeft(strings.TrimPrefix(msg, "flag provided but not defined: "), "-")
		return usagef("unknown flag --%s", f)
	case strings.HasPrefix(msg, "flag needs an argument: "):
		f := strings.TrimLeft(strings.TrimPrefix(msg, "flag needs an argument: "), "-")
		return usagef("--%s needs a value", f)
	case strings.HasPrefix(msg, "invalid value "), strings.HasPrefix(msg, "invalid boolean value "):
		// invalid value "V" for flag -F: REASON
		rest := msg[strings.IndexByte(msg, '"'):]
		v, err2 := strconv.QuotedPrefix(rest)
		if err2 == nil {
			val, _ := strconv.Unquote(v)
			rest = strings.TrimPrefix(rest[len(v):], " for flag -")
			f, reason, _ := strings.Cut(rest, ": ")
			switch {
			case strings.HasSuffix(reason, "parse error"):
				reason = "not a valid " + flagKind(fs, f)
			case strings.HasSuffix(reason, "value out of range"):
				reason = "out of range"
			}
			return usagef("--%s %s: %s", f, quoteArg(val), reason)
		}
	}
	return usagef("%v", err)
}

// flagKind names what a flag's value must be, for parse errors.
func flagKind(fs *flag.FlagSet, name string) string {
	if fs == nil {
		return "value"
	}
	f := fs.Lookup(name)
	if f == nil {
		return "value"
	}
	if g, ok := f.Value.(flag.Getter); ok {
		switch g.Get().(type) {
		case int, int64:
			return "whole number"
		case uint, uint64:
			return "whole number (0 or more)"
		case float64:
			return "number"
		case bool:
			return "true or false"
		}
	}
	return "value"
}

// numberAfterList reports a positional argument that is a number right after a flag's value
// (as in --weights 0.7 0.5, where 0.5 becomes an argument): lists take commas, not spaces.
func numberAfterList(flagArg, value, arg string) error {
	if !looksNumeric(arg) {
		return nil
	}
	if _, err := os.Stat(arg); err == nil {
		return nil // a file named like a number is an argument
	}
	return usagef("%q after %s %s is taken as an argument: lists take commas and no spaces (%s %s,%s)", arg, flagArg, value, flagArg, value, arg)
}

// looksNumeric reports whether s is a number or a list or range of numbers.
func looksNumeric(s string) bool {
	if s == "" {
		return false
	}
	digit := false
	for _, r := range s {
		switch {
		case r >= '0' && r <= '9':
			digit = true
		case strings.ContainsRune(".,:+-eE", r):
		default:
			return false
		}
	}
	return digit
}
