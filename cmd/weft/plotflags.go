package main

import (
	"errors"
	"flag"
	"fmt"
	"strings"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/internal/plots"
)

// plotFlagsUsage describes the picture flags in a command's usage, the descriptions starting
// at column col as the command's other flags do.
func plotFlagsUsage(def plots.Size, col int) string {
	var b strings.Builder
	for _, f := range [][2]string{
		{"--plot FILE", "also draw a picture of the result, PNG or SVG by FILE's extension"},
		{"--plot-size WxH", fmt.Sprintf("the picture's size in pixels (default %dx%d)", def.W, def.H)},
		{"--force", "replace an existing picture file (never an input)"},
	} {
		fmt.Fprintf(&b, "  %-*s%s\n", col-2, f[0]+"  ", f[1])
	}
	return b.String()
}

// plotFlags are the flags of a command that can draw a picture of its result: the picture is
// drawn from the result the command computed, so it reads nothing more.
type plotFlags struct {
	path, size string
	force      bool
	format     plots.Format
	px         plots.Size
}

// add registers the flags; def is the picture's default size.
func (p *plotFlags) add(fs *flag.FlagSet, def plots.Size) {
	p.px = def
	fs.StringVar(&p.path, "plot", "", "")
	fs.StringVar(&p.size, "plot-size", "", "")
	fs.BoolVar(&p.force, "force", false, "")
}

// validate checks the flags' values (usage errors).
func (p *plotFlags) validate() error {
	if p.size != "" {
		if p.path == "" {
			return usagef("--plot-size needs --plot FILE")
		}
		s, err := plots.ParseSize(p.size)
		if err != nil {
			return usagef("--plot-size: %v", err)
		}
		p.px = s
	}
	if p.path != "" {
		f, err := plots.FormatOf(p.path)
		if err != nil {
			return usagef("--plot: %v", err)
		}
		p.format = f
	}
	return nil
}

// check refuses, before any work, a picture that would replace an input, or an existing file
// without --force.
func (p *plotFlags) check(inputs ...*weft.Checkpoint) error {
	if p.path == "" {
		return nil
	}
	var paths []string
	for _, c := range inputs {
		paths = append(paths, c.Path, c.Dir)
		paths = append(paths, c.Files...)
		for _, sf := range c.SideFiles {
			paths = append(paths, sf.Path)
		}
	}
	_, err := plots.CheckOutput(p.path, p.force, paths)
	if errors.Is(err, plots.ErrExists) {
		return fmt.Errorf("--plot %s: the file exists; --force replaces it", p.path)
	}
	if err != nil {
		return fmt.Errorf("--plot: %w", err)
	}
	return nil
}

// write draws the picture and writes it, saying so on stderr.
func (p *plotFlags) write(e *env, draw func(plots.Format, plots.Size) ([]byte, error)) error {
	if p.path == "" {
		return nil
	}
	data, err := draw(p.format, p.px)
	if err != nil {
		return fmt.Errorf("--plot: %w", err)
	}
	if err := plots.WriteFile(p.path, data); err != nil {
		return err
	}
	fmt.Fprintf(e.stderr, "picture written to %s (%dx%d %s)\n", p.path, p.px.W, p.px.H, p.format)
	return nil
}
