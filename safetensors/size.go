package safetensors

import "github.com/weft-ml/weft"

// ParseSize parses a size in bytes such as "5GB", "500MB", "2GiB" or "2G": it is
// weft.ParseSize, the one size parser of every size option, kept here for callers of this
// package.
func ParseSize(s string) (int64, error) { return weft.ParseSize(s) }
