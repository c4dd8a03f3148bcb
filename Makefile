# weft: build, test, demo, bench, fuzz, lint.
GO       ?= go
BIN      := bin/weft
FUZZTIME ?= 10s
# FUZZTIME_SHORT is how long make test fuzzes each target.
FUZZTIME_SHORT ?= 2s
# Debian packages the tests and benchmarks use: real NBD clients and the
# nbdkit reference server, fio, and FUSE with the tools to put a file
# system on a FUSE file (e2fsprogs, mount/losetup from util-linux), and
# libnbd's Python bindings for the torture writers (python3-libnbd).
DEB_PKGS ?= qemu-utils libnbd-bin nbdkit fio fuse3 e2fsprogs util-linux python3-libnbd docker.io busybox-static
# Headless Chromium and its driver for the dashboard's browser test: best
# effort (the test skips, saying so, without them).
BROWSER_PKGS ?= chromium chromium-driver
# make torture: how long the nemesis runs, and its seed (0: from the clock);
# then how many crash points each power-loss test tries, and how long every
# fuzz target runs.
DURATION ?= 10m
SEED     ?= 0
POWERLOSS_POINTS ?= 2000
TORTURE_FUZZTIME ?= 10s
.PHONY: all build test deps demo bench fuzz fuzz-short torture lint clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/weft

# deps installs the Debian packages the tests need when running as root and
# one is missing.
deps:
	@missing=""; for p in $(DEB_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
		else echo "missing Debian packages:$$missing (run make test as root to install them)"; fi; \
	fi
	@missing=""; for p in $(BROWSER_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; } || \
			echo "could not install$$missing: the dashboard's browser test will skip"; \
		else echo "missing Debian packages:$$missing (the dashboard's browser test will skip)"; fi; \
	fi

# The whole suite under the race detector, two packages at a time (the CI
# machines have 2 cores). The end-to-end tests build their own weft binary
# in a temporary directory. Then every fuzz target for FUZZTIME_SHORT.
test: deps
	$(GO) vet ./...
	$(GO) test -race -timeout 12m -p 2 ./...
	$(MAKE) fuzz-short

demo: build
	KEEP=$(KEEP) WEFT=$(CURDIR)/$(BIN) ./scripts/demo.sh

bench: build
	$(GO) test -run '^$$' -bench . ./blockstore/ ./blockmap/
	$(GO) test -run '^$$' -bench 'BenchmarkImport' -benchtime 3x ./volume/
	WEFT=$(CURDIR)/$(BIN) ./scripts/bench-table.sh

# fuzz runs every Fuzz target for FUZZTIME each; a crasher fails it.
fuzz:
	GO=$(GO) FUZZTIME=$(FUZZTIME) ./scripts/fuzz.sh

fuzz-short:
	GO=$(GO) FUZZTIME=$(FUZZTIME_SHORT) ./scripts/fuzz.sh

# torture runs a mesh of real daemons under a seeded nemesis for DURATION
# and prints acknowledged writes, lost, corrupt reads and faults (see
# README, Torture); it fails when anything was lost or read corrupt. Then
# the power-loss tests at POWERLOSS_POINTS crash points each, and every
# fuzz target for TORTURE_FUZZTIME: the figures of the README's report.
torture: build deps
	@/usr/bin/python3 -c 'import nbd' 2>/dev/null || { echo "make torture: /usr/bin/python3 cannot import nbd (Debian package python3-libnbd; make deps installs it as root)"; exit 1; }
	$(GO) build -o bin/torture ./internal/cmd/torture
	bin/torture -bin $(BIN) -duration $(DURATION) -seed $(SEED)
	WEFT_POWERLOSS_POINTS=$(POWERLOSS_POINTS) bash -o pipefail -c "$(GO) test -count=1 -timeout 60m -run 'TestPowerLoss' -v ./blockstore ./volume | grep -E '^(--- |ok|FAIL)|power loss'"
	GO=$(GO) FUZZTIME=$(TORTURE_FUZZTIME) ./scripts/fuzz.sh

lint:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

clean:
	rm -rf bin
