package main

import (
	"errors"
	"fmt"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/internal/plots"
)

// plotFlags are the flags of a command that can draw a picture of its result: the picture is
// drawn from the result the command computed, so it reads nothing more.
type plotFlags struct {
	path, size string
	force      bool
	format     plots.Format
	px         plots.Size
}

// add registers the flags; def is the picture's default size.
func (p *plotFlags) add(fs *flagSet, def plots.Size) {
	p.px = def
	fs.section("Picture flags")
	fs.StringVar(&p.path, "plot", "", "also draw a picture of the result to `FILE`, PNG or SVG by its extension")
	fs.StringVar(&p.size, "plot-size", "", fmt.Sprintf("the picture's size in pixels, `WxH` (default %dx%d)", def.W, def.H))
	fs.BoolVar(&p.force, "force", false, "replace an existing picture file (never an input)")
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
