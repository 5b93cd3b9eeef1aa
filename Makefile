# mailferry: see docs/style.md section 11 for what each target promises.
SHELL := /bin/bash
GO ?= go
VERSION := $(shell git describe --always --dirty 2>/dev/null || echo dev)
# Where `make test` runs its throwaway Dovecot (wiped on each start).
DOVECOT_DIR ?= /tmp/mailferry-dovecot-test
# ... and its throwaway PostgreSQL, for the multi-machine batch tests.
POSTGRES_DIR ?= /tmp/mailferry-postgres-test
FUZZTIME ?= 30s
# The short fuzz pass at the end of `make test`: each fuzz target for this many executions.
# A count, not a duration: with a duration, Go's fuzz coordinator races its own deadline
# and on a loaded machine fails a target with a bare "context deadline exceeded" and no
# failing input (golang/go#51484, #75804; it failed CI here on FuzzLoad). A count has no
# deadline to race; minimisation of a new input is bounded the same way.
TESTFUZZTIME ?= 3000x
TESTFUZZMINIMIZE ?= 200x

.PHONY: build test unit lint tidy fuzz fuzz-nightly cover demo bench clean soak

build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o bin/mailferry ./cmd/mailferry

# Everything, against a real Dovecot and PostgreSQL (the batch engine's multi-machine path): a
# skipped integration test is a failure here. Both are stopped whatever the tests do, and the
# exit code is go test's. Then every fuzz target
# runs for $(TESTFUZZTIME) (docs/failure-model.md F10; found with grep, so that only the packages
# that have fuzz targets are built for fuzzing).
test:
	bash testdata/dovecot/dovecot.sh start "$(DOVECOT_DIR)"
	trap 'bash testdata/dovecot/dovecot.sh stop "$(DOVECOT_DIR)"; bash testdata/postgres/postgres.sh stop "$(POSTGRES_DIR)"' EXIT; \
	bash testdata/postgres/postgres.sh start "$(POSTGRES_DIR)" && \
	. "$(DOVECOT_DIR)/env" && . "$(POSTGRES_DIR)/env" && \
	MAILFERRY_TEST_REQUIRE=1 $(GO) test -race -count=1 -timeout 20m ./...
	@set -e; for dir in $$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u); do \
		for fn in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$$dir"/*_test.go | cut -c6-); do \
			echo "fuzz $$dir $$fn ($(TESTFUZZTIME))"; \
			$(GO) test -run '^$$' -fuzz "^$$fn$$" -fuzztime $(TESTFUZZTIME) -fuzzminimizetime $(TESTFUZZMINIMIZE) "$$dir"; \
		done; \
	done

# Longer randomised reliability runs against a real Dovecot (RELIABILITY.md): 25 random
# SIGKILL trials per pipeline (MAILFERRY_SOAK_TRIALS=n for more, MAILFERRY_SOAK_SEED=s to
# replay a logged seed), a denser network-fault sweep, and the step-by-step kill sweeps; the
# batch scenarios at full size (25 worker kills, 200 account pairs) against PostgreSQL too,
# and 100 rounds of the nightly change generator, CONDSTORE/QRESYNC on and off (issue 11);
# 200 rounds of the two-way random models (folder renames and deletions included, issue 12).
soak:
	bash testdata/dovecot/dovecot.sh start "$(DOVECOT_DIR)"
	trap 'bash testdata/dovecot/dovecot.sh stop "$(DOVECOT_DIR)"; bash testdata/postgres/postgres.sh stop "$(POSTGRES_DIR)"' EXIT; \
	bash testdata/postgres/postgres.sh start "$(POSTGRES_DIR)" && \
	. "$(DOVECOT_DIR)/env" && . "$(POSTGRES_DIR)/env" && \
	MAILFERRY_TEST_REQUIRE=1 MAILFERRY_SOAK=1 $(GO) test -count=1 -timeout 60m -v \
		-run '^(TestA1RandomKill|TestA2KillSweepIMAP|TestA1A4KillSweepPOP3Delete|TestB1B4TruncationSweep|TestBatch(WorkerKilledMidAccount|WorkerStoppedPastLease|Scale|GroupCapSampled|DatabaseDown)|TestNightlyGenerator(Condstore|NoCondstore)|TestDovecot(MaildirRandomRounds|SameMessagesFirstSync)|TestRunModel(RandomRounds|Incremental))$$' ./cmd/mailferry/ ./sync/twoway/

# Quick feedback without a server: integration tests skip.
unit:
	$(GO) test -race -count=1 ./...

# golangci-lint at a pinned version, built by `go run` (nothing to install); its settings are
# in .golangci.yml (errcheck, gocyclo <= 25 outside tests, govet, revive, staticcheck, ...).
GOLANGCI_LINT ?= $(GO) run github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v2.15.0
lint:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt -l: these files need gofmt -w:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GOLANGCI_LINT) run ./...

tidy:
	$(GO) mod tidy
	git diff --exit-code go.mod go.sum

# Each fuzz target of each package for $(FUZZTIME); nothing to do when there are none.
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
		for fn in $$($(GO) test -list '^Fuzz' "$$pkg" | grep '^Fuzz' || true); do \
			echo "fuzz $$pkg $$fn ($(FUZZTIME))"; \
			$(GO) test -run '^$$' -fuzz "^$$fn$$" -fuzztime $(FUZZTIME) "$$pkg"; \
		done; \
	done

# The long run for a nightly job (docs/failure-model.md F10): each fuzz target for 10 minutes.
fuzz-nightly:
	$(MAKE) fuzz FUZZTIME=10m

cover:
	$(GO) test -count=1 -covermode=atomic -coverprofile=coverage.out ./...
	$(GO) tool cover -html=coverage.out -o coverage.html
	$(GO) tool cover -func=coverage.out | tail -n 1

demo:
	$(GO) run ./cmd/mailferry demo

bench:
	bash testdata/bench/bench.sh

clean:
	rm -rf bin coverage.out coverage.html
