package main

import (
	"context"
	"encoding/json"
	"strings"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/ops"
	"github.com/weft-ml/weft/recipe"
)

// A command sweeps a parameter when its flag lists several values (--alpha 0.1,0.3,0.5) or
// says each (ablate --drop each: one variant per layer); -o is then a template naming the
// sweeps ({alpha}, {layer}), and every variant is written together, as weft run writes a
// recipe's outputs (the same recipe package builds them, from the same parameters).

// sweepList parses a flag that may list several values separated by commas, each read by
// parse (which returns its JSON form), into the values of a sweep named name over the
// field at path. One value makes no sweep (nil).
func sweepList(flagName, name, s string, path []string, parse func(string) (any, error)) (first any, sw *recipe.Sweep, err error) {
	parts := strings.Split(s, ",")
	sw = &recipe.Sweep{Name: name, Paths: [][]string{path}}
	for _, p := range parts {
		v, err := parse(strings.TrimSpace(p))
		if err != nil {
			return nil, nil, usagef("--%s: %v", flagName, err)
		}
		js, err := json.Marshal(v)
		if err != nil {
			return nil, nil, err
		}
		if first == nil {
			first = v
		}
		sw.Values = append(sw.Values, recipe.Value{Text: strings.TrimSpace(p), JSON: js})
	}
	if len(sw.Values) == 1 {
		return first, nil, nil
	}
	return first, sw, nil
}

// templated reports whether a command writes through writeSweep: it sweeps a flag, or its
// output path is a template.
func templated(out string, sweeps []recipe.Sweep) bool {
	return len(sweeps) > 0 || strings.ContainsAny(out, "{}")
}

// writeSweep writes a command's op for every value of its swept flags, to the paths -o's
// template gives, together (one read of the inputs for all).
func writeSweep(ctx context.Context, e *env, of *outFlags, op ops.Op, inputs []*weft.Checkpoint, files []string, sweeps []recipe.Sweep) error {
	r, err := recipe.ForCommand(op, inputs, files, of.out, sweeps)
	if err != nil {
		return usagef("%v", err)
	}
	b, err := recipe.Build(r, recipe.BuildOptions{})
	if err != nil {
		return flagErr(err)
	}
	defer b.Close()
	return writeBuilt(ctx, e, b, of, &runOptions{})
}
