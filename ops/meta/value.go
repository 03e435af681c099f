package meta

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// ParseValue parses a typed GGUF value written as TYPE:VALUE:
//
//	u8:7  i8:-1  u16:  i16:  u32:4096  i32:  u64:  i64:-5   integers (decimal, or 0x hex)
//	f32:1e-5  f64:0.1                                      floats
//	bool:true  bool:false
//	str:TEXT                                               TEXT as it is (colons, commas...)
//	arr[T]:a,b,c                                           an array of scalars of type T
//	arr[T]:[JSON]                                          the same from a JSON array, e.g.
//	                                                        arr[str]:["a,b","c"]
//
// T is any of the scalar types above; arr[T]: with nothing after it is the empty array. The
// result has the Go type weft.KV documents for that GGUF type (uint32, []string, ...).
// Numbers must fit their type and be written in full: "u8:256", "u32:-1" and "u32:12abc"
// are refused.
func ParseValue(s string) (any, error) {
	typ, val, ok := strings.Cut(s, ":")
	if !ok {
		return nil, fmt.Errorf("value %q: want TYPE:VALUE (types: %s, arr[T])", clip(s), scalarTypeList)
	}
	if elem, isArr := strings.CutPrefix(typ, "arr["); isArr {
		elem, closed := strings.CutSuffix(elem, "]")
		if !closed {
			return nil, fmt.Errorf("value %q: array type %q: want arr[T]", clip(s), typ)
		}
		return parseArray(elem, val)
	}
	if _, known := scalarTypes[typ]; !known {
		return nil, fmt.Errorf("value %q: unknown type %q (types: %s, arr[T])", clip(s), typ, scalarTypeList)
	}
	return parseScalar(typ, val)
}

// scalarTypes are GGUF's scalar value types by the names ParseValue takes.
var scalarTypes = map[string]bool{
	"u8": true, "i8": true, "u16": true, "i16": true, "u32": true, "i32": true, "u64": true,
	"i64": true, "f32": true, "f64": true, "bool": true, "str": true,
}

const scalarTypeList = "u8, i8, u16, i16, u32, i32, u64, i64, f32, f64, bool, str"

func parseScalar(typ, v string) (any, error) {
	signed := func(bits int) (int64, error) {
		n, err := strconv.ParseInt(v, 0, bits)
		if err != nil {
			return 0, fmt.Errorf("%s:%s: %v", typ, clip(v), numErr(err))
		}
		return n, nil
	}
	unsigned := func(bits int) (uint64, error) {
		n, err := strconv.ParseUint(v, 0, bits)
		if err != nil {
			return 0, fmt.Errorf("%s:%s: %v", typ, clip(v), numErr(err))
		}
		return n, nil
	}
	float := func(bits int) (float64, error) {
		f, err := strconv.ParseFloat(v, bits)
		if err != nil {
			return 0, fmt.Errorf("%s:%s: %v", typ, clip(v), numErr(err))
		}
		return f, nil
	}
	switch typ {
	case "u8":
		n, err := unsigned(8)
		return uint8(n), err
	case "i8":
		n, err := signed(8)
		return int8(n), err
	case "u16":
		n, err := unsigned(16)
		return uint16(n), err
	case "i16":
		n, err := signed(16)
		return int16(n), err
	case "u32":
		n, err := unsigned(32)
		return uint32(n), err
	case "i32":
		n, err := signed(32)
		return int32(n), err
	case "u64":
		return unsigned(64)
	case "i64":
		return signed(64)
	case "f32":
		f, err := float(32)
		return float32(f), err
	case "f64":
		return float(64)
	case "bool":
		switch v {
		case "true":
			return true, nil
		case "false":
			return false, nil
		}
		return nil, fmt.Errorf("bool:%s: want true or false", clip(v))
	case "str":
		if !utf8.ValidString(v) {
			return nil, fmt.Errorf("str: value is not valid UTF-8")
		}
		return v, nil
	}
	return nil, fmt.Errorf("unknown type %q", typ)
}

// numErr drops strconv's quoting of the whole input from a parse error.
func numErr(err error) string {
	if ne, ok := err.(*strconv.NumError); ok {
		if ne.Err == strconv.ErrRange {
			return "out of range for the type"
		}
		return "not a number of the type"
	}
	return err.Error()
}

// parseArray parses the elements of arr[elem]:v.
func parseArray(elem, v string) (any, error) {
	if !scalarTypes[elem] {
		return nil, fmt.Errorf("arr[%s]: unknown element type (types: %s; arrays of arrays are not supported)", elem, scalarTypeList)
	}
	var items []string
	switch {
	case v == "":
	case strings.HasPrefix(strings.TrimSpace(v), "["):
		var raw []json.RawMessage
		if err := json.Unmarshal([]byte(v), &raw); err != nil {
			return nil, fmt.Errorf("arr[%s]: JSON array: %v", elem, err)
		}
		for i, r := range raw {
			if elem == "str" {
				var s string
				if err := json.Unmarshal(r, &s); err != nil {
					return nil, fmt.Errorf("arr[str]: element %d: want a JSON string, got %s", i, clip(string(r)))
				}
				items = append(items, s)
				continue
			}
			items = append(items, strings.TrimSpace(string(r)))
		}
	default:
		items = strings.Split(v, ",")
	}
	vals := make([]any, len(items))
	for i, it := range items {
		x, err := parseScalar(elem, it)
		if err != nil {
			return nil, fmt.Errorf("arr[%s]: element %d: %v", elem, i, err)
		}
		vals[i] = x
	}
	return makeSlice(elem, vals), nil
}

// makeSlice turns parsed elements into the typed slice weft.KV uses for arrays.
func makeSlice(elem string, vals []any) any {
	switch elem {
	case "u8":
		return conv[uint8](vals)
	case "i8":
		return conv[int8](vals)
	case "u16":
		return conv[uint16](vals)
	case "i16":
		return conv[int16](vals)
	case "u32":
		return conv[uint32](vals)
	case "i32":
		return conv[int32](vals)
	case "u64":
		return conv[uint64](vals)
	case "i64":
		return conv[int64](vals)
	case "f32":
		return conv[float32](vals)
	case "f64":
		return conv[float64](vals)
	case "bool":
		return conv[bool](vals)
	}
	return conv[string](vals)
}

func conv[T any](vals []any) []T {
	out := make([]T, len(vals))
	for i, v := range vals {
		out[i] = v.(T)
	}
	return out
}

// TypeName returns the ParseValue spelling of a GGUF value's type ("u32", "arr[str]").
func TypeName(v any) string {
	switch v.(type) {
	case uint8:
		return "u8"
	case int8:
		return "i8"
	case uint16:
		return "u16"
	case int16:
		return "i16"
	case uint32:
		return "u32"
	case int32:
		return "i32"
	case uint64:
		return "u64"
	case int64:
		return "i64"
	case float32:
		return "f32"
	case float64:
		return "f64"
	case bool:
		return "bool"
	case string:
		return "str"
	case []uint8:
		return "arr[u8]"
	case []int8:
		return "arr[i8]"
	case []uint16:
		return "arr[u16]"
	case []int16:
		return "arr[i16]"
	case []uint32:
		return "arr[u32]"
	case []int32:
		return "arr[i32]"
	case []uint64:
		return "arr[u64]"
	case []int64:
		return "arr[i64]"
	case []float32:
		return "arr[f32]"
	case []float64:
		return "arr[f64]"
	case []bool:
		return "arr[bool]"
	case []string:
		return "arr[str]"
	}
	return fmt.Sprintf("%T", v)
}

// FormatValue writes a GGUF value so that ParseValue reads it back: TYPE:VALUE, arrays of
// strings as JSON, floats in the shortest form that round-trips.
func FormatValue(v any) string {
	t := TypeName(v)
	switch x := v.(type) {
	case string:
		return t + ":" + x
	case float32:
		return t + ":" + strconv.FormatFloat(float64(x), 'g', -1, 32)
	case float64:
		return t + ":" + strconv.FormatFloat(x, 'g', -1, 64)
	case []string:
		var b strings.Builder
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		_ = enc.Encode(x)
		return t + ":" + strings.TrimSuffix(b.String(), "\n")
	case []float32:
		s := make([]string, len(x))
		for i, f := range x {
			s[i] = strconv.FormatFloat(float64(f), 'g', -1, 32)
		}
		return t + ":" + strings.Join(s, ",")
	case []float64:
		s := make([]string, len(x))
		for i, f := range x {
			s[i] = strconv.FormatFloat(f, 'g', -1, 64)
		}
		return t + ":" + strings.Join(s, ",")
	}
	s := fmt.Sprint(v)
	if strings.HasPrefix(t, "arr[") {
		s = strings.Join(strings.Fields(strings.Trim(s, "[]")), ",")
	}
	return t + ":" + s
}

// clip shortens a string for a message.
func clip(s string) string {
	if len(s) > 60 {
		return s[:57] + "..."
	}
	return s
}
