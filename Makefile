# tcpcryptd — build, test, fuzz and benchmark targets.
# `make test` is the command CI runs (through .ci/run); keep it true.

GO       ?= go
PKGS     ?= ./...
FUZZTIME ?= 15s
BENCHTIME ?= 1s
BIN      := bin/tcpcryptd

.PHONY: all build test vet fmt-check fuzz bench bench-micro bench-tools clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/tcpcryptd

# The whole suite: formatting, vet, unit tests (fuzz seed corpora included),
# and the namespace tests, which need root (they skip without it, and fail
# when skipped under CI=true); then the protocol and stack packages again
# under the race detector (the relay's goroutines hand connections over).
test: fmt-check vet
	$(GO) test -count=1 -timeout 25m $(PKGS)
	$(GO) test -count=1 -race -timeout 10m ./crypt/... ./stack/...

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

# The side-by-side benchmark (needs root): tcpcryptd against kernel TCP, its
# own plain relay, wireguard-go and a TLS 1.3 relay on the same namespaces.
# Writes bench-results/{report.md,results.json,results.csv}; takes about 25
# minutes. BENCHFLAGS passes options, e.g. BENCHFLAGS='-runs 3 -only bulk'
# (bin/tcpcryptd-bench -h lists them).
BENCHFLAGS ?=
bench: bench-tools
	bin/tcpcryptd-bench -tcpcryptd $(BIN) -wireguard-go bin/wireguard-go -out bench-results $(BENCHFLAGS)

bench-tools: build
	$(GO) build -o bin/tcpcryptd-bench ./cmd/tcpcryptd-bench
	$(GO) build -o bin/wireguard-go golang.zx2c4.com/wireguard

# Micro-benchmarks of every package (no root needed).
bench-micro:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) $(PKGS)

clean:
	rm -rf bin bench-results
