package verify

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/sidefile"
)

// maxJSONDepth bounds the nesting of a side file's JSON. Real configs and tokenizers nest a
// handful of levels; serde_json, which transformers' tokenizers use, stops at 128.
const maxJSONDepth = 128

// checkSideFiles checks that every .json side file of c is one valid JSON value, and that a
// safetensors index's metadata.total_size agrees with the tensors (a warning otherwise).
func checkSideFiles(c *weft.Checkpoint, warnings []string) ([]SideFileReport, []string) {
	var out []SideFileReport
	for _, sf := range c.SideFiles {
		if !strings.HasSuffix(strings.ToLower(sf.Name), ".json") {
			continue
		}
		rep := SideFileReport{Name: sf.Name, Checked: "JSON"}
		if err := checkJSON(sf); err != nil {
			rep.Problem = fmt.Sprintf("%s: %v", sf.Name, err)
		}
		out = append(out, rep)
	}
	if c.Dir != "" && c.Format == weft.Safetensors {
		if w := checkTotalSize(c); w != "" {
			warnings = append(warnings, w)
		}
	}
	return out, warnings
}

// checkJSON parses a side file as exactly one JSON value, streaming, with bounded depth.
func checkJSON(sf weft.SideFile) error {
	b, err := sidefile.Read(&sf)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	depth := 0
	first := true
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			if first {
				return errors.New("empty file, not JSON")
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("not valid JSON: %v", err)
		}
		if !first && depth == 0 {
			return fmt.Errorf("not valid JSON: more than one value (%v after the first)", tok)
		}
		first = false
		if d, ok := tok.(json.Delim); ok {
			switch d {
			case '{', '[':
				depth++
				if depth > maxJSONDepth {
					return fmt.Errorf("JSON nests more than %d levels deep", maxJSONDepth)
				}
			default:
				depth--
			}
		}
	}
}

// checkTotalSize compares model.safetensors.index.json's metadata.total_size with the sum of
// the tensors' bytes (what transformers writes) and the sum of the shard sizes (what some
// other tools write); it returns a warning when it matches neither.
func checkTotalSize(c *weft.Checkpoint) string {
	p := filepath.Join(c.Dir, "model.safetensors.index.json")
	b, err := sidefile.Read(&weft.SideFile{Name: filepath.Base(p), Path: p})
	if err != nil {
		return ""
	}
	var idx struct {
		Metadata struct {
			TotalSize *json.Number `json:"total_size"`
		} `json:"metadata"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&idx); err != nil || idx.Metadata.TotalSize == nil {
		return ""
	}
	want, err := idx.Metadata.TotalSize.Int64()
	if err != nil {
		return fmt.Sprintf("%s: metadata.total_size %s is not an integer", filepath.Base(p), idx.Metadata.TotalSize.String())
	}
	var tensors, files int64
	for _, t := range c.Tensors {
		n, _ := t.Size()
		tensors += n
	}
	for _, fp := range c.Files {
		if st, err := os.Stat(fp); err == nil {
			files += st.Size()
		}
	}
	if want != tensors && want != files {
		return fmt.Sprintf("%s: metadata.total_size is %d, but the tensors hold %d bytes and the shards are %d bytes", filepath.Base(p), want, tensors, files)
	}
	return ""
}
