// Package sidefile reads the side files of a checkpoint (config.json, tokenizer files,
// generation_config.json) under one size limit, and edits the keys of their JSON in place:
// an op changes only the keys it owns, and every other byte of the file (key order, number
// spellings, escapes, indentation) stays as it was.
package sidefile

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/weft-ml/weft"
)

// MaxBytes bounds every side file weft reads into memory. Real config files are a few
// kilobytes and tokenizer.json files a few tens of megabytes.
const MaxBytes = 256 << 20

// ErrTooLarge is returned for a side file larger than MaxBytes.
var ErrTooLarge = errors.New("sidefile: larger than the size weft reads into memory")

// Read returns the contents of a side file: its replacement Data when an op set one, or the
// file at Path.
func Read(sf *weft.SideFile) ([]byte, error) {
	if sf.Data != nil {
		return sf.Data, nil
	}
	f, err := sf.Open() // a local file, or one read through a remote checkpoint's source
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st, ok := f.(interface{ Stat() (os.FileInfo, error) }); ok {
		if fi, err := st.Stat(); err == nil && fi.Size() > MaxBytes {
			return nil, fmt.Errorf("%s: %w (%d bytes, at most %d)", sf.Path, ErrTooLarge, fi.Size(), MaxBytes)
		}
	}
	b, err := io.ReadAll(io.LimitReader(f, MaxBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", sf.Path, err)
	}
	if len(b) > MaxBytes {
		return nil, fmt.Errorf("%s: %w (more than %d bytes)", sf.Path, ErrTooLarge, MaxBytes)
	}
	return b, nil
}

// Of returns the contents of c's side file name, whether c has it, and any read error.
func Of(c *weft.Checkpoint, name string) ([]byte, bool, error) {
	sf := c.SideFile(name)
	if sf == nil {
		return nil, false, nil
	}
	b, err := Read(sf)
	return b, true, err
}

// Set replaces the contents of c's side file name with data, adding the side file when c
// has none of that name.
func Set(c *weft.Checkpoint, name string, data []byte) {
	if sf := c.SideFile(name); sf != nil {
		sf.Data = data
		return
	}
	c.SideFiles = append(c.SideFiles, weft.SideFile{Name: name, Data: data})
}

// EditJSON parses c's side file name as a JSON object, hands it to edit, and stores the
// result when edit changed it. It reports whether the file changed; a checkpoint without
// the file is left alone (edit is not called).
func EditJSON(c *weft.Checkpoint, name string, edit func(d *Doc) error) (bool, error) {
	b, ok, err := Of(c, name)
	if err != nil || !ok {
		return false, err
	}
	d, err := Parse(b)
	if err != nil {
		return false, fmt.Errorf("%s: %w", name, err)
	}
	if err := edit(d); err != nil {
		return false, fmt.Errorf("%s: %w", name, err)
	}
	if !d.Changed() {
		return false, nil
	}
	Set(c, name, d.Bytes())
	return true, nil
}
