package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
)

// Commands are written as restic writes them: per command an options struct whose fields
// are the flags' values, registered with their help from the struct (addFlags), a validate
// step (argument count, flag combinations and values: usage errors, exit 2, before anything
// is read) and a run step (open the inputs, run the op, write). The help of a command is
// generated from its flags, its synopsis, its description and its examples, so that the
// flags and their help cannot drift apart.
//
// To add a command: write FOOCmd() returning its *command (name, summary, synopsis, about,
// examples, newOptions) and its options type (addFlags registering each flag with a help
// whose back-quoted word names the value, and calling the shared groups it takes: outFlags.add
// and addTypes, inputFlags.add last; validate; run), then list it in main.go's commands.
// TestHelpFromFlags checks every flag's help and TestExamplesRun runs every example, in a
// directory exampleFiles prepares: an example may name only files made there.

// options are one invocation's options of a command.
type options interface {
	// addFlags registers the command's flags on fs, with their help.
	addFlags(fs *flagSet)
	// validate checks the positional arguments and the flags' values before anything is
	// read; its errors are usage errors.
	validate(e *env, args []string) error
	// run does the command's work.
	run(ctx context.Context, e *env, args []string) error
}

// command is one subcommand of weft (or of a command with subcommands, such as lora).
type command struct {
	name    string // as typed: "noise", or "extract" for weft lora extract
	summary string // one line, for 'weft help'
	// synopsis is the command line's shape, a line per form, without the leading "weft ".
	synopsis []string
	// about says what the command does, before the flags in its help.
	about string
	// notes follow the flags in the help (what the flags' one-line help cannot say).
	notes string
	// examples are command lines that the help prints and a test runs.
	examples []example
	// newOptions returns the options of one invocation (nil for a command with subs).
	newOptions func() options
	// subs are the subcommands (weft lora extract, weft lora merge); the first argument
	// chooses one.
	subs []*command
	// parent is the command of a subcommand (set by commandList).
	parent *command
}

// example is one example command line of a command's help, run by a test in a directory
// holding the files it names (see examples_test.go).
type example struct {
	// line is the command line as typed, starting with "weft "; a trailing "# ..." is a
	// comment.
	line string
	// outputs are the files or directories the line writes, when they are not just -o's
	// (and --plot's) value: a template's expansions, say. The test checks that they exist.
	outputs []string
}

// fullName is the command's name as typed after weft: "noise", "lora extract".
func (c *command) fullName() string {
	if c.parent != nil {
		return c.parent.fullName() + " " + c.name
	}
	return c.name
}

// flags returns the command's flag set, with its flags registered (and options that hold
// their values), for help, parsing and tests.
func (c *command) flags() (*flagSet, options) {
	fs := newFlagSet(c.fullName())
	if c.newOptions == nil {
		return fs, nil
	}
	o := c.newOptions()
	o.addFlags(fs)
	return fs, o
}

// execute runs the command with the arguments after its name.
func (c *command) execute(ctx context.Context, e *env, args []string) error {
	if len(c.subs) > 0 {
		var names []string
		for _, s := range c.subs {
			names = append(names, s.name)
		}
		want := strings.Join(names, " or ")
		if len(names) > 2 {
			want = strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
		}
		if len(args) == 0 {
			return usagef("want a subcommand: %s", want)
		}
		switch args[0] {
		case "-h", "--help", "-help", "help":
			return errHelp
		}
		for _, s := range c.subs {
			if s.name == args[0] {
				return s.execute(ctx, e, args[1:])
			}
		}
		return usagef("unknown subcommand %q: want %s", args[0], want)
	}
	fs, o := c.flags()
	pos, err := parseFlags(fs.FlagSet, args)
	if err != nil {
		return c.siblingFlag(err)
	}
	if err := o.validate(e, pos); err != nil {
		return err
	}
	return o.run(ctx, e, pos)
}

// siblingFlag turns an unknown flag of a subcommand that another subcommand of its command
// defines into a message saying where it belongs (weft glitch add --tokens).
func (c *command) siblingFlag(err error) error {
	msg := err.Error()
	name, ok := strings.CutPrefix(msg, "unknown flag --")
	if !ok || c.parent == nil {
		return err
	}
	for _, s := range c.parent.subs {
		if fs, _ := s.flags(); s != c && fs.Lookup(name) != nil {
			return usagef("--%s belongs to 'weft %s', not 'weft %s'", name, s.fullName(), c.fullName())
		}
	}
	return err
}

// flagSet is a flag.FlagSet that remembers, for the help, the order in which flags were
// registered, the section each belongs to, and which names are another flag's alias.
type flagSet struct {
	*flag.FlagSet
	sections []*flagSection
	aliases  map[string][]string // flag name -> its aliases, in order
	aliasOf  map[string]string   // alias -> the flag it spells
}

// flagSection is a titled group of flags in a command's help.
type flagSection struct {
	title string
	names []string
}

// newFlagSet returns an empty flag set whose first section is the command's own flags.
func newFlagSet(name string) *flagSet {
	return &flagSet{FlagSet: flag.NewFlagSet(name, flag.ContinueOnError), sections: []*flagSection{{title: "Flags"}},
		aliases: map[string][]string{}, aliasOf: map[string]string{}}
}

// section starts a section of the help: flags registered from now on are listed under
// title. A title used before continues that section.
func (f *flagSet) section(title string) {
	for i, s := range f.sections {
		if s.title == title {
			// Move it last, so that registrations go there.
			f.sections = append(append(f.sections[:i:i], f.sections[i+1:]...), s)
			return
		}
	}
	f.sections = append(f.sections, &flagSection{title: title})
}

// note records a flag registered under the current section.
func (f *flagSet) note(name string) {
	s := f.sections[len(f.sections)-1]
	s.names = append(s.names, name)
}

// alias registers name as another spelling of the flag of (same value, listed with it).
func (f *flagSet) alias(name, of string) {
	target := f.Lookup(of)
	f.FlagSet.Var(target.Value, name, "same as "+dashes(of))
	f.aliases[of] = append(f.aliases[of], name)
	f.aliasOf[name] = of
}

// StringVar defines a string flag (see flag.FlagSet.StringVar).
func (f *flagSet) StringVar(p *string, name, value, usage string) {
	f.FlagSet.StringVar(p, name, value, usage)
	f.note(name)
}

// String defines a string flag (see flag.FlagSet.String).
func (f *flagSet) String(name, value, usage string) *string {
	p := new(string)
	f.StringVar(p, name, value, usage)
	return p
}

// BoolVar defines a bool flag (see flag.FlagSet.BoolVar).
func (f *flagSet) BoolVar(p *bool, name string, value bool, usage string) {
	f.FlagSet.BoolVar(p, name, value, usage)
	f.note(name)
}

// Bool defines a bool flag (see flag.FlagSet.Bool).
func (f *flagSet) Bool(name string, value bool, usage string) *bool {
	p := new(bool)
	f.BoolVar(p, name, value, usage)
	return p
}

// IntVar defines an int flag (see flag.FlagSet.IntVar).
func (f *flagSet) IntVar(p *int, name string, value int, usage string) {
	f.FlagSet.IntVar(p, name, value, usage)
	f.note(name)
}

// Int defines an int flag (see flag.FlagSet.Int).
func (f *flagSet) Int(name string, value int, usage string) *int {
	p := new(int)
	f.IntVar(p, name, value, usage)
	return p
}

// Int64Var defines an int64 flag (see flag.FlagSet.Int64Var).
func (f *flagSet) Int64Var(p *int64, name string, value int64, usage string) {
	f.FlagSet.Int64Var(p, name, value, usage)
	f.note(name)
}

// Int64 defines an int64 flag (see flag.FlagSet.Int64).
func (f *flagSet) Int64(name string, value int64, usage string) *int64 {
	p := new(int64)
	f.Int64Var(p, name, value, usage)
	return p
}

// Uint64Var defines a uint64 flag (see flag.FlagSet.Uint64Var).
func (f *flagSet) Uint64Var(p *uint64, name string, value uint64, usage string) {
	f.FlagSet.Uint64Var(p, name, value, usage)
	f.note(name)
}

// Uint64 defines a uint64 flag (see flag.FlagSet.Uint64).
func (f *flagSet) Uint64(name string, value uint64, usage string) *uint64 {
	p := new(uint64)
	f.Uint64Var(p, name, value, usage)
	return p
}

// Float64Var defines a float64 flag (see flag.FlagSet.Float64Var).
func (f *flagSet) Float64Var(p *float64, name string, value float64, usage string) {
	f.FlagSet.Float64Var(p, name, value, usage)
	f.note(name)
}

// Float64 defines a float64 flag (see flag.FlagSet.Float64).
func (f *flagSet) Float64(name string, value float64, usage string) *float64 {
	p := new(float64)
	f.Float64Var(p, name, value, usage)
	return p
}

// Var defines a flag of any value (see flag.FlagSet.Var).
func (f *flagSet) Var(v flag.Value, name, usage string) {
	f.FlagSet.Var(v, name, usage)
	f.note(name)
}

// dashes writes a flag's name as typed: -o for one letter, --name otherwise.
func dashes(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

// Help layout: flag names in a column of helpIndent, descriptions wrapped at helpWidth.
const (
	helpIndent = 24
	helpWidth  = 92
)

// printUsage prints the help of c: its synopsis, description, flags by section (with their
// help, from the flag set), notes and examples; a command with subcommands prints each
// subcommand's in turn.
func printUsage(w io.Writer, c *command) {
	leaves := []*command{c}
	if len(c.subs) > 0 {
		leaves = c.subs
	}
	prefix := "Usage: "
	for _, l := range leaves {
		for _, s := range l.synopsis {
			fmt.Fprintf(w, "%sweft %s\n", prefix, s)
			prefix = "       "
		}
	}
	if c.about != "" {
		fmt.Fprintf(w, "\n%s\n", strings.TrimRight(c.about, "\n"))
	}
	for _, l := range leaves {
		if l != c {
			fmt.Fprintf(w, "\nweft %s:\n", l.fullName())
			if l.about != "" {
				fmt.Fprintf(w, "%s\n", strings.TrimRight(l.about, "\n"))
			}
		}
		fs, _ := l.flags()
		printFlags(w, fs)
		if l != c && l.notes != "" {
			fmt.Fprintf(w, "\n%s\n", strings.TrimRight(l.notes, "\n"))
		}
	}
	if c.notes != "" {
		fmt.Fprintf(w, "\n%s\n", strings.TrimRight(c.notes, "\n"))
	}
	fmt.Fprintf(w, "\nExamples:\n")
	for _, l := range leaves {
		for _, x := range l.examples {
			fmt.Fprintf(w, "  %s\n", x.line)
		}
	}
}

// printFlags prints the flags of fs by section.
func printFlags(w io.Writer, fs *flagSet) {
	for _, s := range fs.sections {
		if len(s.names) == 0 {
			continue
		}
		fmt.Fprintf(w, "\n%s:\n", s.title)
		for _, name := range s.names {
			if _, ok := fs.aliasOf[name]; ok {
				continue
			}
			fmt.Fprint(w, flagHelp(fs, name))
		}
	}
}

// flagHelp renders one flag (with its aliases) and its help: "  --seed N   help...".
func flagHelp(fs *flagSet, name string) string {
	f := fs.Lookup(name)
	metavar, usage := flag.UnquoteUsage(f)
	if isBoolFlag(fs.FlagSet, name) {
		metavar = ""
	}
	// A help that starts with its value's name ("`P=T`: tensors matching P ...") does not
	// repeat it after the flag's.
	if strings.HasPrefix(f.Usage, "`"+metavar+"`: ") {
		usage = strings.TrimPrefix(usage, metavar+": ")
	}
	names := []string{dashes(name)}
	for _, a := range fs.aliases[name] {
		names = append(names, dashes(a))
	}
	head := "  " + strings.Join(names, ", ")
	if metavar != "" {
		head += " " + metavar
	}
	if d := f.DefValue; !strings.Contains(usage, "default") && d != "" && d != "0" && d != "-1" && d != "false" && d != "[]" {
		usage += fmt.Sprintf(" (default %s)", d)
	}
	var b strings.Builder
	b.WriteString(head)
	col := len(head)
	if col+2 > helpIndent {
		b.WriteString("\n")
		col = 0
	}
	b.WriteString(strings.Repeat(" ", helpIndent-col))
	b.WriteString(wrap(usage, helpIndent, helpWidth))
	b.WriteString("\n")
	return b.String()
}

// wrap fills text to lines of at most width columns, every line after the first indented by
// indent; a newline in text starts a new line.
func wrap(text string, indent, width int) string {
	var b strings.Builder
	pad := strings.Repeat(" ", indent)
	for i, para := range strings.Split(text, "\n") {
		if i > 0 {
			b.WriteString("\n" + pad)
		}
		col := indent
		for j, word := range strings.Fields(para) {
			if j > 0 {
				if col+1+len(word) > width {
					b.WriteString("\n" + pad)
					col = indent
				} else {
					b.WriteString(" ")
					col++
				}
			}
			b.WriteString(word)
			col += len(word)
		}
	}
	return b.String()
}
