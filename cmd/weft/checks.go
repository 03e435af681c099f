package main

import (
	"flag"
	"strconv"
)

// setFlags returns the names of the flags given on the command line.
func setFlags(fs *flag.FlagSet) map[string]bool {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	return set
}

// positive refuses each of the named flags that was given a value that is not positive
// (--std 0, --count -1), saying so of that flag, rather than letting the zero read as "not
// given". what says what the value is ("the standard deviation").
func positive(fs *flag.FlagSet, what map[string]string) error {
	for name, desc := range what {
		f := fs.Lookup(name)
		if f == nil || !setFlags(fs)[name] {
			continue
		}
		v, err := strconv.ParseFloat(f.Value.String(), 64)
		if err == nil && !(v > 0) {
			return usagef("--%s %s: %s must be positive", name, f.Value.String(), desc)
		}
	}
	return nil
}
