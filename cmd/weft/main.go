// Command weft edits large language model checkpoints by streaming them: blend, add noise,
// ablate, make glitch tokens, inspect, convert and compare safetensors, GGUF and PyTorch
// checkpoints without holding a model in memory.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/ckpt"
)

// command is one subcommand. run gets the arguments after the command name.
type command struct {
	name    string
	summary string
	// usage is the synopsis and an example, shown by --help and on usage errors.
	usage string
	run   func(ctx context.Context, e *env, args []string) error
}

var commands = map[string]*command{}

// register adds a subcommand; each command file calls it from an init function.
func register(c *command) {
	if commands[c.name] != nil {
		panic("weft: command registered twice: " + c.name)
	}
	commands[c.name] = c
}

// env is what a command may touch: its output streams.
type env struct {
	stdout, stderr io.Writer
	// tty reports whether stderr is a terminal (progress bars are drawn only then).
	tty bool
}

// usageError is an error in how a command was called: exit status 2.
type usageError struct{ msg string }

func (u *usageError) Error() string { return u.msg }

// usagef returns a usage error.
func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

// errHelp is returned when --help was asked for: usage is printed and the exit status is 0.
var errHelp = errors.New("help requested")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		// A second signal, or a stuck write: remove temporary files and leave.
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
		<-sig
		ckpt.RemoveTemps()
		os.Exit(130)
	}()
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, isTerminal(os.Stderr))
	interrupted := ctx.Err() != nil // before stop(), which cancels ctx too
	stop()
	if interrupted && code != 0 {
		ckpt.RemoveTemps()
		code = 130
	}
	os.Exit(code)
}

// run executes a command line and returns the exit status: 0 on success, 2 for usage
// errors, 1 for every other error.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, tty bool) int {
	e := &env{stdout: stdout, stderr: stderr, tty: tty}
	if len(args) == 0 {
		printHelp(stderr)
		return 2
	}
	name := args[0]
	switch name {
	case "help", "-h", "--help", "-help":
		if len(args) > 1 {
			if c := commands[args[1]]; c != nil {
				fmt.Fprint(stdout, c.usage)
				return 0
			}
			fmt.Fprintf(stderr, "weft: unknown command %q\n", args[1])
			return 2
		}
		printHelp(stdout)
		return 0
	case "version", "--version":
		fmt.Fprintf(stdout, "weft %s\n", weft.Version)
		return 0
	}
	c := commands[name]
	if c == nil {
		fmt.Fprintf(stderr, "weft: unknown command %q (see 'weft help')\n", name)
		return 2
	}
	err := c.run(ctx, e, args[1:])
	var ue *usageError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errHelp):
		fmt.Fprint(stdout, c.usage)
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "weft %s: %s\n\n%s", name, ue.msg, c.usage)
		return 2
	case errors.Is(err, context.Canceled):
		fmt.Fprintf(stderr, "weft %s: interrupted; nothing was written\n", name)
		return 130
	default:
		fmt.Fprintf(stderr, "weft %s: %v%s\n", name, err, hint(err))
		return 1
	}
}

func printHelp(w io.Writer) {
	fmt.Fprintf(w, "weft %s: edit LLM checkpoints by streaming them\n\nUsage: weft COMMAND [ARGS] [FLAGS]\n\nCommands:\n", weft.Version)
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-12s %s\n", n, commands[n].summary)
	}
	fmt.Fprintf(w, "\nRun 'weft COMMAND --help' for a command's flags and an example.\n")
}

// parseFlags parses args with fs, allowing flags before and after positional arguments
// ("--" ends flag parsing). It returns the positional arguments.
func parseFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	fs.SetOutput(io.Discard)
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, errHelp
			}
			return nil, usagef("%v", err)
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if rest[0] == "--" {
			return append(pos, rest[1:]...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }
