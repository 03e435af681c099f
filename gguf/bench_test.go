package gguf

import (
	"fmt"
	"testing"
)

// BenchmarkReadTokens measures reading a 300,000-token vocabulary.
func BenchmarkReadTokens(b *testing.B) {
	toks := make([]string, 300000)
	for i := range toks {
		toks[i] = fmt.Sprintf("tok%d", i)
	}
	data := rfile{kvs: []rkv{kvStrs("tokenizer.ggml.tokens", toks...)}}.build()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := readBytes(data, "x"); err != nil {
			b.Fatal(err)
		}
	}
}
