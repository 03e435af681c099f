# weft: edit LLM checkpoints by streaming them.
GO      ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
GOFMT   ?= $(shell command -v gofmt 2>/dev/null || echo /usr/local/go/bin/gofmt)
BIN     := bin/weft
DEMO    := out/demo
# A duration (30s) or a count of executions (5000x, what CI uses: on Go 1.26 a duration can end
# in a spurious "context deadline exceeded", golang/go#75804).
FUZZTIME ?= 30s

.PHONY: all build demo test vet fmt-check asm-check bench fuzz testdata clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/weft

# The main job on tiny checkpoints the project generates: blend a base and a tuned model at
# alpha 0.5 and show what it did (and draw it: docs/demo-diff.png, shown in the README).
demo: build
	@mkdir -p $(DEMO)
	$(BIN) synth --tiny --seed 1 -o $(DEMO)/base --force
	$(BIN) synth --tiny --seed 2 --related-to 1 -o $(DEMO)/tuned --force
	$(BIN) blend $(DEMO)/base $(DEMO)/tuned --alpha 0.5 -o $(DEMO)/blend-0.5 --force --quiet
	$(BIN) diff $(DEMO)/base $(DEMO)/blend-0.5 --top 8 --plot docs/demo-diff.png --plot-size 1000x600 --force
	$(BIN) inspect $(DEMO)/blend-0.5 --tensors=false

test: fmt-check vet asm-check
	$(GO) test -count=1 ./...

# The AVX2 and AVX-512 kernels (x_amd64.s beside the scalar code) are written by internal/asmgen, a module
# of its own (it needs avo); this checks that the committed files are what it generates now.
# Regenerate them with: go generate ./codec ./quant ./ops/blend
asm-check:
	cd internal/asmgen && $(GO) test -count=1 .

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$($(GOFMT) -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# Benchmarks print throughput and peak RSS beside a same-run baseline; see BENCHMARKS.md.
# WEFT_BENCH_GB=2,8 WEFT_BENCH_BLEND_GB=1,4 WEFT_BENCH_MERGE_GB=1 gives the sizes BENCHMARKS.md quotes.
bench: build
	WEFT_BIN=$(CURDIR)/$(BIN) $(GO) test -run '^$$' -bench . -benchtime 1x -timeout 0 ./bench/

# Rewrites testdata/ with weft's own generators (a test checks the committed files match).
testdata:
	$(GO) generate ./internal/gentestdata

fuzz:
	@for t in $$(grep -rl 'func Fuzz' --include='*_test.go' . | xargs -n1 dirname | sort -u); do \
	  for f in $$(grep -ho 'func Fuzz[A-Za-z0-9_]*' $$t/*_test.go | sed 's/func //'); do \
	    echo "== $$t $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$t || exit 1; \
	  done; \
	done

clean:
	rm -rf bin out
