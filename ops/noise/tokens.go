package noise

import (
	"fmt"
	"github.com/weft-ml/weft"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
)

// Limits on token specs, so that a typo or a hostile file cannot make weft allocate without
// bound: ids above MaxTokenID are refused, and an @file is read only up to MaxTokenFileSize.
const (
	MaxTokenID       = int64(1) << 40
	MaxTokenFileSize = 64 << 20
)

// TokenSet is a set of row (token) ids, kept as sorted, disjoint, inclusive ranges, so that a
// spec such as "0-99999" costs two numbers and not a hundred thousand. The zero value is the
// empty set.
type TokenSet struct {
	spans [][2]int64 // inclusive [lo, hi], sorted, disjoint, not adjacent
}

// NewTokenSet returns the set of the given ids.
func NewTokenSet(ids ...int64) *TokenSet {
	s := &TokenSet{}
	for _, id := range ids {
		s.spans = append(s.spans, [2]int64{id, id})
	}
	s.normalize()
	return s
}

// RangeSet returns the set of ids in [lo, hi) (empty when hi <= lo).
func RangeSet(lo, hi int64) *TokenSet {
	if hi <= lo {
		return &TokenSet{}
	}
	return &TokenSet{spans: [][2]int64{{lo, hi - 1}}}
}

// ParseTokenSet parses a token spec: comma-separated items, each an id ("5"), an inclusive
// range ("10-20") or "@FILE", a file of ids and ranges separated by commas, spaces or newlines,
// where "#" starts a comment. Ids are non-negative and at most MaxTokenID.
func ParseTokenSet(spec string) (*TokenSet, error) {
	s := &TokenSet{}
	if strings.TrimSpace(spec) == "" {
		return nil, fmt.Errorf("empty token spec")
	}
	for _, item := range strings.Split(spec, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		if strings.HasPrefix(item, "@") {
			if err := s.addFile(item[1:]); err != nil {
				return nil, err
			}
			continue
		}
		if err := s.addItem(item, "token spec"); err != nil {
			return nil, err
		}
	}
	s.normalize()
	return s, nil
}

// ParseTokenList parses a token list that may name tokens by their text as well as by id:
// comma-separated items, each an id ("5"), an inclusive range ("10-20"), "@FILE" (ids and
// ranges, as in ParseTokenSet), or a token's text ("<|im_end|>", "hello"), which may be
// quoted as a Go string ("\"a,b\"", "\"5\"") to hold a comma or to look like a number. It
// returns the ids and, in the order given, the texts, which the caller resolves with the
// checkpoint's tokenizer. An item made only of digits and '-' is always an id or a range.
func ParseTokenList(spec string) (*TokenSet, []string, error) {
	s := &TokenSet{}
	var strs []string
	if strings.TrimSpace(spec) == "" {
		return nil, nil, fmt.Errorf("empty token list")
	}
	items, err := splitItems(spec)
	if err != nil {
		return nil, nil, err
	}
	for _, item := range items {
		switch {
		case item == "":
		case strings.HasPrefix(item, `"`):
			t, err := strconv.Unquote(item)
			if err != nil {
				return nil, nil, fmt.Errorf("token %s: not a valid quoted string", item)
			}
			strs = append(strs, t)
		case strings.HasPrefix(item, "@"):
			if err := s.addFile(item[1:]); err != nil {
				return nil, nil, err
			}
		case strings.Trim(item, "0123456789- ") == "":
			if err := s.addItem(item, "token list"); err != nil {
				return nil, nil, err
			}
		default:
			strs = append(strs, item)
		}
	}
	s.normalize()
	return s, strs, nil
}

// splitItems splits a token list at the commas outside double quotes and trims the items.
func splitItems(spec string) ([]string, error) {
	var items []string
	start, in := 0, false
	for i := 0; i < len(spec); i++ {
		switch spec[i] {
		case '\\':
			if in {
				i++
			}
		case '"':
			in = !in
		case ',':
			if !in {
				items = append(items, strings.TrimSpace(spec[start:i]))
				start = i + 1
			}
		}
	}
	if in {
		return nil, fmt.Errorf("token list %q: a quote is not closed", spec)
	}
	return append(items, strings.TrimSpace(spec[start:])), nil
}

func (s *TokenSet) addFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return weft.PathError(err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxTokenFileSize+1))
	if err != nil {
		return fmt.Errorf("token file %s: %w", path, err)
	}
	if len(b) > MaxTokenFileSize {
		return fmt.Errorf("token file %s: larger than %d bytes", path, MaxTokenFileSize)
	}
	for ln, line := range strings.Split(string(b), "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		for _, item := range strings.FieldsFunc(line, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\r' }) {
			if err := s.addItem(item, fmt.Sprintf("%s line %d", path, ln+1)); err != nil {
				return err
			}
		}
	}
	return nil
}

func parseID(x, where string) (int64, error) {
	v, err := strconv.ParseInt(strings.TrimSpace(x), 10, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("%s: %q is not a token id (a non-negative integer)", where, x)
	}
	if v > MaxTokenID {
		return 0, fmt.Errorf("%s: token id %d is larger than %d", where, v, MaxTokenID)
	}
	return v, nil
}

func (s *TokenSet) addItem(item, where string) error {
	if i := strings.IndexByte(item, '-'); i > 0 {
		lo, err := parseID(item[:i], where)
		if err != nil {
			return err
		}
		hi, err := parseID(item[i+1:], where)
		if err != nil {
			return err
		}
		if hi < lo {
			return fmt.Errorf("%s: range %q ends before it starts", where, item)
		}
		s.spans = append(s.spans, [2]int64{lo, hi})
		return nil
	}
	v, err := parseID(item, where)
	if err != nil {
		return err
	}
	s.spans = append(s.spans, [2]int64{v, v})
	return nil
}

// normalize sorts the spans and merges overlapping or adjacent ones.
func (s *TokenSet) normalize() {
	sort.Slice(s.spans, func(i, j int) bool { return s.spans[i][0] < s.spans[j][0] })
	out := s.spans[:0]
	for _, sp := range s.spans {
		if n := len(out); n > 0 && sp[0] <= out[n-1][1]+1 {
			if sp[1] > out[n-1][1] {
				out[n-1][1] = sp[1]
			}
			continue
		}
		out = append(out, sp)
	}
	s.spans = out
}

// Contains reports whether id is in the set.
func (s *TokenSet) Contains(id int64) bool {
	if s == nil {
		return false
	}
	i := sort.Search(len(s.spans), func(i int) bool { return s.spans[i][1] >= id })
	return i < len(s.spans) && s.spans[i][0] <= id
}

// Len returns the number of ids in the set.
func (s *TokenSet) Len() int64 {
	if s == nil {
		return 0
	}
	n := int64(0)
	for _, sp := range s.spans {
		n += sp[1] - sp[0] + 1
	}
	return n
}

// Max returns the largest id in the set, or -1 when it is empty.
func (s *TokenSet) Max() int64 {
	if s == nil || len(s.spans) == 0 {
		return -1
	}
	return s.spans[len(s.spans)-1][1]
}

// Spans returns the set as sorted, disjoint, inclusive [lo, hi] ranges.
func (s *TokenSet) Spans() [][2]int64 {
	if s == nil {
		return nil
	}
	return append([][2]int64(nil), s.spans...)
}

// Each calls fn for every id of the set in increasing order, stopping at the first error.
func (s *TokenSet) Each(fn func(id int64) error) error {
	if s == nil {
		return nil
	}
	for _, sp := range s.spans {
		for id := sp[0]; id <= sp[1]; id++ {
			if err := fn(id); err != nil {
				return err
			}
		}
	}
	return nil
}

// eachIn calls fn for the ids of the set in [r0, r1), in increasing order.
func (s *TokenSet) eachIn(r0, r1 int64, fn func(id int64) error) error {
	i := sort.Search(len(s.spans), func(i int) bool { return s.spans[i][1] >= r0 })
	for ; i < len(s.spans) && s.spans[i][0] < r1; i++ {
		for id := max(s.spans[i][0], r0); id <= min(s.spans[i][1], r1-1); id++ {
			if err := fn(id); err != nil {
				return err
			}
		}
	}
	return nil
}

// IDs returns the ids of the set in increasing order; for sets known to be small.
func (s *TokenSet) IDs() []int64 {
	out := make([]int64, 0, s.Len())
	s.Each(func(id int64) error { out = append(out, id); return nil })
	return out
}

// Union returns the ids in s or in o.
func (s *TokenSet) Union(o *TokenSet) *TokenSet {
	r := &TokenSet{spans: append(s.Spans(), o.Spans()...)}
	r.normalize()
	return r
}

// Minus returns the ids of s that are not in o.
func (s *TokenSet) Minus(o *TokenSet) *TokenSet {
	r := &TokenSet{}
	for _, sp := range s.Spans() {
		lo := sp[0]
		for _, cut := range o.Spans() {
			if cut[1] < lo || cut[0] > sp[1] {
				continue
			}
			if cut[0] > lo {
				r.spans = append(r.spans, [2]int64{lo, cut[0] - 1})
			}
			lo = cut[1] + 1
			if lo > sp[1] {
				break
			}
		}
		if lo <= sp[1] {
			r.spans = append(r.spans, [2]int64{lo, sp[1]})
		}
	}
	r.normalize()
	return r
}

// String formats the set as a token spec ("0,5-9").
func (s *TokenSet) String() string {
	var b strings.Builder
	for i, sp := range s.Spans() {
		if i > 0 {
			b.WriteByte(',')
		}
		if sp[0] == sp[1] {
			fmt.Fprintf(&b, "%d", sp[0])
		} else {
			fmt.Fprintf(&b, "%d-%d", sp[0], sp[1])
		}
	}
	return b.String()
}

// Check returns an error naming the tensor when an id of the set is not a row of a tensor
// with rows rows.
func (s *TokenSet) Check(rows int64, tensor string) error {
	if m := s.Max(); m >= rows {
		return weft.OptionValuef("tokens", fmt.Sprint(m), "token id out of range: tensor %q has %d rows (ids 0-%d)", tensor, rows, rows-1)
	}
	return nil
}

// MarshalText writes the set as a token spec (String).
func (s *TokenSet) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads a token spec of ids and ranges, as String writes it. Unlike
// ParseTokenSet it refuses @FILE items: a record names its rows, not a file to read.
func (s *TokenSet) UnmarshalText(b []byte) error {
	r := &TokenSet{}
	for _, item := range strings.Split(string(b), ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		if err := r.addItem(item, "recorded token spec"); err != nil {
			return err
		}
	}
	r.normalize()
	*s = *r
	return nil
}
