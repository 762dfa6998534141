# MPREG — build, demo, tests.
GO       ?= go
FUZZTIME ?= 10s
BIN      := bin/mpreg
GOLANGCI_LINT_VERSION := 2.15.0
GOLANGCI_LINT         := $(shell $(GO) env GOPATH)/bin/golangci-lint

.PHONY: all build demo test vet lint race load fuzz bench clean js-deps tools deploy-check

all: build

build:
	$(GO) build -buildvcs=auto -o $(BIN) ./cmd/mpreg

## demo: one process, embedded NATS, three nodes, a showcase of requests.
## It says so before building: a first build takes about a minute.
demo:
	@echo "Building $(BIN) (the first build compiles NATS and everything else: about a minute), then running the demo."
	$(GO) build -buildvcs=auto -o $(BIN) ./cmd/mpreg
	$(BIN) demo

## test: vet, lint, the race-checked test suite, the load tests, and a short fuzz pass.
test: vet lint js-deps tools deploy-check race load fuzz

## tools: promtool (Debian's prometheus package) and dot (graphviz) for the
## checks that use them, installed when apt-get can (as root); without them
## those checks say so and the rest runs.
tools:
	@for t in promtool:prometheus dot:graphviz; do \
		if ! command -v $${t%%:*} >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
			apt-get install -y -q $${t##*:} >/dev/null 2>&1 || echo "$${t##*:} not installed"; \
		fi; \
	done

## deploy-check: promtool checks the Prometheus scrape configuration (the
## deploy package's tests check the rest of deploy/).
deploy-check:
	@if command -v promtool >/dev/null 2>&1; then promtool check config deploy/prometheus/prometheus.yml; \
	else echo "promtool not found: deploy/prometheus/prometheus.yml not checked by promtool"; fi

## js-deps: nats.js for the JavaScript examples' test, and the mpreg npm
## package (sdk/js) installed and built for its tests (skipped without npm).
js-deps:
	@if command -v npm >/dev/null 2>&1; then \
		npm ci --prefix examples/js --no-audit --no-fund --loglevel=error && \
		npm ci --prefix sdk/js --no-audit --no-fund --loglevel=error && \
		npm run build --prefix sdk/js --silent; \
	else echo "npm not found: the JavaScript tests (examples/js, sdk/js) will be skipped"; fi

vet:
	$(GO) vet ./...

## lint: golangci-lint (.golangci.yml), installed at its pinned version when missing.
lint:
	@$(GOLANGCI_LINT) version 2>/dev/null | grep -q "version $(GOLANGCI_LINT_VERSION) " || \
		$(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v$(GOLANGCI_LINT_VERSION)
	$(GOLANGCI_LINT) run ./...

race:
	MPREG_REQUIRE_JS=$$(command -v npm >/dev/null 2>&1 && echo 1) $(GO) test -race -count=1 -timeout 20m ./...

## load: the load tests (TestLoad*) and the allocation budget
## (TestAllocBudget), without the race detector, which slows senders so much
## that overload never happens under it and changes what allocates. One
## package at a time (-p 1): each loads the machine on purpose (hundreds of
## MiB through JetStream, floods of big replies), and one must not starve
## another's nodes.
load:
	$(GO) test -count=1 -p 1 -timeout 10m -run '^(TestLoad|TestAllocBudget)' ./...

fuzz:
	FUZZTIME=$(FUZZTIME) ./scripts/fuzz.sh

## bench: Go benchmarks, MPREG next to raw NATS request/reply.
bench:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 2s ./internal/bench/...

clean:
	rm -rf bin examples/js/node_modules sdk/js/node_modules sdk/js/dist
