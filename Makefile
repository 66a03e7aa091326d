# tcpcryptd — build, test, fuzz and benchmark targets.
# `make test` is the command CI runs (through .ci/run); keep it true.

GO       ?= go
PKGS     ?= ./...
FUZZTIME ?= 15s
BENCHTIME ?= 1s
BIN      := bin/tcpcryptd

.PHONY: all build test vet fmt-check fuzz bench clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/tcpcryptd

# The whole suite: formatting, vet, unit tests (fuzz seed corpora included),
# and the namespace tests, which need root (they skip without it, and fail
# when skipped under CI=true).
test: fmt-check vet
	$(GO) test -count=1 -timeout 25m $(PKGS)

vet:
	$(GO) vet $(PKGS)

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# A short run of every fuzz target in the tree (FUZZTIME each).
fuzz:
	@set -e; for pkg in $$($(GO) list $(PKGS)); do \
	  list=$$($(GO) test -list '^Fuzz' $$pkg) || { echo "$$list"; exit 1; }; \
	  for f in $$(echo "$$list" | grep '^Fuzz' || true); do \
	    echo "== $$pkg $$f"; \
	    $(GO) test $$pkg -run '^$$' -fuzz "^$$f\$$" -fuzztime $(FUZZTIME); \
	  done; \
	done

# Micro-benchmarks of every package (issue 5 adds the side-by-side
# namespace benchmark, which needs root).
bench:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) $(PKGS)

clean:
	rm -rf bin
