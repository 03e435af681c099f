# weft: edit LLM checkpoints by streaming them.
GO      ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
GOFMT   ?= $(shell command -v gofmt 2>/dev/null || echo /usr/local/go/bin/gofmt)
BIN     := bin/weft
DEMO    := out/demo
FUZZTIME ?= 30s

.PHONY: all build demo test vet fmt-check bench fuzz clean

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

test: fmt-check vet
	$(GO) test -count=1 ./...

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$($(GOFMT) -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# Benchmarks print throughput and peak RSS beside a same-run baseline; see BENCHMARKS.md.
bench: build
	$(GO) test -run '^$$' -bench . -benchtime 1x ./bench/

fuzz:
	@for t in $$(grep -rl 'func Fuzz' --include='*_test.go' . | xargs -n1 dirname | sort -u); do \
	  for f in $$(grep -ho 'func Fuzz[A-Za-z0-9_]*' $$t/*_test.go | sed 's/func //'); do \
	    echo "== $$t $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$t || exit 1; \
	  done; \
	done

clean:
	rm -rf bin out
