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
	"strings"
	"syscall"
	"time"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/ckpt"
)

// commands are weft's commands, in the order 'weft help' lists them.
var commands = commandList(
	inspectCmd(), convertCmd(), diffCmd(), verifyCmd(), metaCmd(),
	blendCmd(), loraCmd(), noiseCmd(), ablateCmd(), glitchCmd(), tokensCmd(), softTokenCmd(),
	runCmd(), synthCmd(),
)

// commandList links subcommands to their command and returns cs.
func commandList(cs ...*command) []*command {
	for _, c := range cs {
		for _, s := range c.subs {
			s.parent = c
		}
	}
	return cs
}

// findCommand returns the command of that name, or nil.
func findCommand(name string) *command {
	for _, c := range commands {
		if c.name == name {
			return c
		}
	}
	return nil
}

// env is what a command may touch: its output streams.
type env struct {
	stdout, stderr io.Writer
	// tty reports whether stderr is a terminal (progress bars are drawn only then).
	tty bool
	// writing is set when the command starts writing an output, so that an interrupt
	// says that nothing was written (read-only commands never say so).
	writing bool
	// flags spells an op's parameters as this command's flags where the default rule
	// (see flagName) does not.
	flags map[string]string
	// clock is the progress bars' clock (nil: time.Now); tests set it.
	clock func() time.Time
}

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
// errors, 1 for data and I/O errors, 130 when interrupted (see report).
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
			if c := findCommand(args[1]); c != nil {
				printUsage(stdout, c)
				return 0
			}
			fmt.Fprintf(stderr, "weft: unknown command %q; see 'weft help'\n", args[1])
			return exitUsage
		}
		printHelp(stdout)
		return 0
	case "version", "--version":
		fmt.Fprintf(stdout, "weft %s\n", weft.Version)
		return 0
	}
	c := findCommand(name)
	if c == nil {
		fmt.Fprintf(stderr, "weft: unknown command %q; see 'weft help'\n", name)
		return exitUsage
	}
	return report(e, c, c.execute(ctx, e, args[1:]))
}

func printHelp(w io.Writer) {
	fmt.Fprintf(w, "weft %s: edit LLM checkpoints by streaming them\n\nUsage: weft COMMAND [ARGS] [FLAGS]\n\nCommands:\n", weft.Version)
	for _, c := range commands {
		fmt.Fprintf(w, "  %-12s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\nRun 'weft COMMAND --help' for a command's flags and an example.\n")
}

// parseFlags parses args with fs, allowing flags before and after positional arguments
// ("--" ends flag parsing). It returns the positional arguments. A number right after a
// flag's value is refused as a list written with spaces (--weights 0.7 0.5).
func parseFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	fs.SetOutput(io.Discard)
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, errHelp
			}
			return nil, flagError(fs, err)
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if rest[0] == "--" {
			return append(pos, rest[1:]...), nil
		}
		if f, v, ok := lastFlag(fs, args[:len(args)-len(rest)]); ok {
			if err := numberAfterList(f, v, rest[0]); err != nil {
				return nil, err
			}
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// lastFlag returns the last flag of the parsed arguments used and its value, as written
// (-o OUT, --weights 0.7 or --weights=0.7), when it takes a value.
func lastFlag(fs *flag.FlagSet, used []string) (flagArg, value string, ok bool) {
	n := len(used)
	if n >= 1 && strings.HasPrefix(used[n-1], "-") {
		f, v, has := strings.Cut(used[n-1], "=")
		if !has || isBoolFlag(fs, strings.TrimLeft(f, "-")) {
			return "", "", false
		}
		return f, v, true
	}
	if n >= 2 && strings.HasPrefix(used[n-2], "-") && !strings.Contains(used[n-2], "=") && !isBoolFlag(fs, strings.TrimLeft(used[n-2], "-")) {
		return used[n-2], used[n-1], true
	}
	return "", "", false
}

// isBoolFlag reports whether fs's flag name takes no value.
func isBoolFlag(fs *flag.FlagSet, name string) bool {
	f := fs.Lookup(name)
	if f == nil {
		return false
	}
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }
