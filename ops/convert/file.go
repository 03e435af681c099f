package convert

import (
	"fmt"
	"io"

	"github.com/weft-ml/weft"
)

// readFile returns the contents of a side file (local, or read through the network for a
// remote checkpoint).
func readFile(sf *weft.SideFile) ([]byte, error) {
	r, err := sf.Open()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", sf.Path, err)
	}
	return data, nil
}
