package weft

import (
	"errors"
	"testing"
)

func TestParseSize(t *testing.T) {
	good := map[string]int64{
		// Hugging Face (huggingface_hub parse_size_to_int): powers of 1000, any case,
		// fractions truncated.
		"5GB": 5_000_000_000, "500MB": 500_000_000, "500mb": 500_000_000, "10kb": 10_000, "1TB": 1e12,
		"1.5GB": 1_500_000_000, "1.5gb": 1_500_000_000, " 7 GB ": 7_000_000_000, ".5MB": 500_000,
		"1.0000000001KB": 1000,
		// gguf-split (split_str_to_n_bytes): M = 10^6, G = 10^9; K and T alike, any case.
		"2M": 2_000_000, "5G": 5_000_000_000, "4096M": 4_096_000_000, "100K": 100_000, "100k": 100_000,
		"2g": 2_000_000_000, "1T": 1e12, "1.5G": 1_500_000_000,
		// Binary units.
		"2GiB": 2 << 30, "2gib": 2 << 30, "3KiB": 3072, "1mib": 1 << 20, "1tib": 1 << 40, "0.5KiB": 512,
		// Bytes.
		"1000": 1000, "64B": 64, "64b": 64, "0": 0, "2.": 2,
	}
	for s, want := range good {
		got, err := ParseSize(s)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", s, got, err, want)
		}
	}
	for _, s := range []string{"", "GB", "G", "-1GB", "-2G", "5XB", "5Q", "1e3", "1/2", "1.2.3MB", "99999999999TB", "abc", "5 G B", ".", "2GG", "2 GiBs"} {
		v, err := ParseSize(s)
		if err == nil {
			t.Errorf("ParseSize(%q) = %d, want an error", s, v)
		} else if !errors.Is(err, ErrSize) {
			t.Errorf("ParseSize(%q): %v is not ErrSize", s, err)
		}
	}
}
