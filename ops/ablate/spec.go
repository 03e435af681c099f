package ablate

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// maxSpecItems bounds the number of comma-separated items a spec may hold, so that a
// pathological flag value cannot make the parser allocate without limit.
const maxSpecItems = 1 << 16

// ParseSpec parses a layer spec such as "1-3,7" against a model with n layers (numbered
// 0..n-1) and returns the selected layers in increasing order, each once. A spec is a
// comma-separated list of items; an item is a layer number ("7"), an inclusive range
// ("1-3"), or the word "all". Spaces around items are ignored; overlapping items are merged.
// Empty specs and items, reversed ranges, signs, non-decimal numbers and layers outside
// 0..n-1 are errors that quote the offending item.
func ParseSpec(s string, n int) ([]int, error) {
	ranges, err := parseRanges(s, n, false)
	if err != nil {
		return nil, err
	}
	seen := make([]bool, n)
	count := 0
	for _, r := range ranges {
		for i := r.lo; i <= r.hi; i++ {
			if !seen[i] {
				seen[i] = true
				count++
			}
		}
	}
	out := make([]int, 0, count)
	for i, ok := range seen {
		if ok {
			out = append(out, i)
		}
	}
	return out, nil
}

// FormatSpec returns the shortest spec ParseSpec reads back as layers (sorted, without
// duplicates, as ParseSpec returns them): [1 2 3 7] gives "1-3,7". Unsorted input is sorted
// first; an empty list gives "".
func FormatSpec(layers []int) string {
	ls := append([]int(nil), layers...)
	sort.Ints(ls)
	var b strings.Builder
	for i := 0; i < len(ls); {
		j := i
		for j+1 < len(ls) && ls[j+1] <= ls[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		if ls[j] == ls[i] {
			b.WriteString(strconv.Itoa(ls[i]))
		} else {
			fmt.Fprintf(&b, "%d-%d", ls[i], ls[j])
		}
		i = j + 1
	}
	return b.String()
}

// Block is a contiguous run of input layers First..Last (inclusive) that appears Copies
// times in a row in the output: a passthrough "frankenmerge" block.
type Block struct {
	// First and Last are the block's first and last input layers.
	First int `json:"first"`
	Last  int `json:"last"`
	// Copies is how many times the block appears in the output in all (at least 2).
	Copies int `json:"copies"`
}

// maxCopies bounds the repeat count of a duplicated block.
const maxCopies = 1024

// ParseBlocks parses a --duplicate spec against a model with n layers. Each comma-separated
// item is a layer or an inclusive range of layers, optionally followed by ":K", the number
// of times the block appears in the output in total (default 2, at least 2, at most 1024):
// "2-3" gives layers 0,1,2,3,2,3,4,...; "1:3" gives 0,1,1,1,2,...; "2-3:3" gives
// 0,1,2,3,2,3,2,3,4,.... Items are kept in the order given; see Sequence for how several
// blocks combine.
func ParseBlocks(s string, n int) ([]Block, error) {
	ranges, err := parseRanges(s, n, true)
	if err != nil {
		return nil, err
	}
	out := make([]Block, len(ranges))
	for i, r := range ranges {
		out[i] = Block{First: r.lo, Last: r.hi, Copies: r.copies}
	}
	return out, nil
}

// HeadSel selects attention heads of one layer.
type HeadSel struct {
	// Layer is the input layer.
	Layer int `json:"layer"`
	// Heads are the heads to zero, numbered from 0.
	Heads []int `json:"heads"`
}

// ParseHeads parses a --heads spec: comma-separated items "L:H", where L is a layer or an
// inclusive range of layers and H a head or an inclusive range of heads; an item without a
// colon adds heads to the layers of the item before it, so "3:0,2,5:1-2" selects heads 0
// and 2 of layer 3 and heads 1 and 2 of layer 5. Layers are checked against n; heads are
// checked later, against each layer's head count. The result has one entry per layer, in
// increasing layer order, with sorted heads without duplicates.
func ParseHeads(s string, n int) ([]HeadSel, error) {
	if n <= 0 {
		return nil, fmt.Errorf("ablate: heads %q: the model has no layers", s)
	}
	if strings.TrimSpace(s) == "" {
		return nil, fmt.Errorf("ablate: empty heads spec; want LAYER:HEAD items such as 3:0,5:1-2")
	}
	items := strings.Split(s, ",")
	if len(items) > maxSpecItems {
		return nil, fmt.Errorf("ablate: heads spec has %d items, at most %d allowed", len(items), maxSpecItems)
	}
	heads := map[int]map[int]bool{}
	var cur []int
	for _, raw := range items {
		item := strings.TrimSpace(raw)
		hpart := item
		if i := strings.IndexByte(item, ':'); i >= 0 {
			lo, hi, err := parseRange(item[:i], item)
			if err != nil {
				return nil, fmt.Errorf("ablate: heads spec %q: %v", s, err)
			}
			if hi >= n {
				return nil, fmt.Errorf("ablate: heads spec %q: item %q: layer %d out of range: the model has %d layers (0-%d)", s, item, hi, n, n-1)
			}
			cur = cur[:0]
			for l := lo; l <= hi; l++ {
				cur = append(cur, l)
			}
			hpart = item[i+1:]
		} else if cur == nil {
			return nil, fmt.Errorf("ablate: heads spec %q: item %q has no layer; write LAYER:HEAD, e.g. 3:%s", s, item, item)
		}
		lo, hi, err := parseRange(hpart, item)
		if err != nil {
			return nil, fmt.Errorf("ablate: heads spec %q: %v", s, err)
		}
		if hi-lo >= 1<<20 {
			return nil, fmt.Errorf("ablate: heads spec %q: item %q selects %d heads", s, item, hi-lo+1)
		}
		for _, l := range cur {
			if heads[l] == nil {
				heads[l] = map[int]bool{}
			}
			for h := lo; h <= hi; h++ {
				heads[l][h] = true
			}
		}
	}
	out := make([]HeadSel, 0, len(heads))
	for l, hs := range heads {
		sel := HeadSel{Layer: l}
		for h := range hs {
			sel.Heads = append(sel.Heads, h)
		}
		sort.Ints(sel.Heads)
		out = append(out, sel)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Layer < out[j].Layer })
	return out, nil
}

type specRange struct{ lo, hi, copies int }

// parseRanges splits a spec into its items, checking each against n. With copies, items may
// end in ":K".
func parseRanges(s string, n int, copies bool) ([]specRange, error) {
	if n <= 0 {
		return nil, fmt.Errorf("ablate: layer spec %q: the model has no layers", s)
	}
	if strings.TrimSpace(s) == "" {
		return nil, fmt.Errorf("ablate: empty layer spec; want layers such as 1-3,7")
	}
	items := strings.Split(s, ",")
	if len(items) > maxSpecItems {
		return nil, fmt.Errorf("ablate: layer spec has %d items, at most %d allowed", len(items), maxSpecItems)
	}
	out := make([]specRange, 0, len(items))
	for _, raw := range items {
		item := strings.TrimSpace(raw)
		body := item
		k := 0
		if copies {
			k = 2
			if i := strings.IndexByte(item, ':'); i >= 0 {
				body = item[:i]
				c, err := parseNum(strings.TrimSpace(item[i+1:]), item, "repeat count")
				if err != nil {
					return nil, fmt.Errorf("ablate: layer spec %q: %v", s, err)
				}
				if c < 2 || c > maxCopies {
					return nil, fmt.Errorf("ablate: layer spec %q: item %q: repeat count %d must be between 2 and %d (the number of times the block appears)", s, item, c, maxCopies)
				}
				k = c
			}
		}
		if strings.EqualFold(strings.TrimSpace(body), "all") {
			out = append(out, specRange{0, n - 1, k})
			continue
		}
		lo, hi, err := parseRange(body, item)
		if err != nil {
			return nil, fmt.Errorf("ablate: layer spec %q: %v", s, err)
		}
		if hi >= n {
			bad := hi
			if lo >= n {
				bad = lo
			}
			return nil, fmt.Errorf("ablate: layer spec %q: item %q: layer %d out of range: the model has %d layers (0-%d)", s, item, bad, n, n-1)
		}
		out = append(out, specRange{lo, hi, k})
	}
	return out, nil
}

// parseRange parses "A" or "A-B" (A <= B), both non-negative decimal numbers.
func parseRange(body, item string) (lo, hi int, err error) {
	body = strings.TrimSpace(body)
	if body == "" {
		return 0, 0, fmt.Errorf("empty item %q", item)
	}
	a, b, isRange := strings.Cut(body, "-")
	lo, err = parseNum(strings.TrimSpace(a), item, "start")
	if err != nil {
		return 0, 0, err
	}
	if !isRange {
		return lo, lo, nil
	}
	hi, err = parseNum(strings.TrimSpace(b), item, "end")
	if err != nil {
		return 0, 0, err
	}
	if hi < lo {
		return 0, 0, fmt.Errorf("item %q: range %d-%d is reversed; write %d-%d", item, lo, hi, hi, lo)
	}
	return lo, hi, nil
}

// parseNum parses a non-negative decimal number of at most 9 digits.
func parseNum(s, item, what string) (int, error) {
	if s == "" {
		return 0, fmt.Errorf("item %q: missing %s", item, what)
	}
	if len(s) > 9 {
		return 0, fmt.Errorf("item %q: %s %q is too large", item, what, s)
	}
	v := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("item %q: %s %q is not a non-negative number", item, what, s)
		}
		v = v*10 + int(c-'0')
	}
	return v, nil
}
