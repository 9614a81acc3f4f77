# cdnpilot: `make test` is what CI runs (.ci/run). It installs what the tests
# need when missing, starts one ClickHouse for the run, and runs every test
# with the race detector. A missing server is a failure, never a skip.
SHELL := /bin/bash
GO ?= go
STATICCHECK_VERSION ?= v0.8.2
FUZZTIME ?= 2m
BENCHTIME ?= 5x

.PHONY: all test deps check lint fmt bench bench-steering bench-dns bench-http bench-ui fuzz demo build

all: check

build:
	$(GO) build ./...

## deps: install the system packages the tests use (Debian), if missing.
deps:
	@.ci/deps

## test: the CI entry point. One package at a time (-p 1): on CI's 2 cores
## the closed-loop simulator and the SIGKILL ledger tests starve each other.
test: deps
	CDNPILOT_REQUIRE_SERVERS=1 .ci/with-clickhouse $(GO) test -race -count=1 -p 1 -timeout 15m ./...

## check: formatting, vet and staticcheck, then the tests.
check: lint test

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

## bench: pipeline benchmarks against a real ClickHouse (figures go to docs/BENCHMARKS.md).
bench:
	@.ci/deps bench
	CDNPILOT_REQUIRE_SERVERS=1 .ci/with-clickhouse sh -c '\
	  $(GO) test -run "^$$" -bench Pipeline -benchtime $(BENCHTIME) -timeout 30m -v ./bench/ && \
	  $(GO) test -run "^$$" -bench . -benchmem -timeout 30m ./beacons/... ./internal/geo/ ./analytics/... ./steering/...'

## bench-steering: every scenario through the closed loop (three runs each:
## the median run is reported) and the baselines;
## writes docs/bench/steering.md and one PNG per scenario.
bench-steering:
	$(GO) test -run "^$$" -bench Steering -benchtime 1x -timeout 60m -v ./bench/

## bench-dns: dnsperf over loopback against the steering DNS (300 regions,
## ECS on every query) and, in the same run, a bare miekg/dns server that
## answers one fixed record (the floor); then the handler chain alone with
## -benchmem. Figures go to docs/BENCHMARKS.md. Run it on an idle machine.
bench-dns:
	@.ci/deps bench-dns
	$(GO) test -run '^$$' -bench DNSPerf -benchtime 1x -timeout 20m -v ./dns/dnsbench/
	$(GO) test -run '^$$' -bench ServeDNS -benchmem -count 3 ./dns/

## bench-http: wrk over loopback against the 302 redirector and the
## steering manifest (300 regions, X-Forwarded-For from every region) and,
## in the same run, a bare net/http handler writing one fixed 302 (the
## floor); then the handlers alone with -benchmem. Figures go to
## docs/BENCHMARKS.md. Run it on an idle machine.
bench-http:
	@.ci/deps bench-http
	$(GO) test -run '^$$' -bench HTTPPerf -benchtime 1x -timeout 20m -v ./steering/redirect/httpbench/
	$(GO) test -run '^$$' -bench . -benchmem ./steering/redirect/

## bench-ui: the web UI in chromium against a demo holding 50 CDNs x 300
## regions: first paint, longest main-thread task and frame gap while the
## overview updates, the regions matrix render. Figures go to
## docs/BENCHMARKS.md; screenshots to e2e/artifacts/uibench.
bench-ui: deps
	$(GO) test -run '^$$' -bench WebUI -benchtime 1x -timeout 20m -v ./e2e/

## fuzz: run every fuzz target for FUZZTIME each (not part of `make test`).
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 10s $$pkg; \
	  done; done

demo:
	$(GO) run ./cmd/cdnpilot demo
