# botfleet — developer tasks. `make help` lists them.
#
# DATABASE_URL and REDIS_URL are exported to every recipe (scripts/services.sh,
# bin/botfleet, go test) so that all of them talk to the same instances. Override
# them on the command line or in the environment.

SHELL := /bin/bash
.DEFAULT_GOAL := build

GO    ?= go
BIN   := bin/botfleet
IMAGE ?= botfleet
EMULATOR_ADDR ?= 127.0.0.1:8081

ifeq ($(origin VERSION),undefined)
VERSION := $(shell git describe --always --dirty 2>/dev/null || echo dev)
endif

DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/botfleet?sslmode=disable
REDIS_URL    ?= redis://127.0.0.1:6379/0
export DATABASE_URL REDIS_URL

BENCH_FLAGS := -run '^$$' -benchmem
# How long `make fuzz` runs each fuzz target, and the short run of each in `make test`.
FUZZTIME       ?= 1m
FUZZTIME_SHORT ?= 6s
# The workload benchmark's overall time limit (each scenario also has its own caps).
BENCH_TIMEOUT ?= 4h

.PHONY: help build services services-stop migrate run emulator test fuzz bench bench-quick \
	bench-micro bench-webhook bench-send bench-broadcast lint docker clean clean-data

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

build: ## compile bin/botfleet (VERSION from git describe, else dev)
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/botfleet

services: ## make sure PostgreSQL and Redis answer; start private ones under .data if not
	scripts/services.sh ensure

services-stop: ## stop the PostgreSQL/Redis that scripts/services.sh started
	scripts/services.sh stop

migrate: build services ## apply the SQL migrations (creates the database if needed)
	$(BIN) migrate

run: build services ## migrate, then run API + worker in one process (development)
	$(BIN) migrate
	exec $(BIN) all

emulator: build ## run the Telegram Bot API emulator (EMULATOR_ADDR, default 127.0.0.1:8081)
	$(BIN) emulator --addr $(EMULATOR_ADDR)

# The test processes' logs and the secrets the tests issued (internal/testlog), scanned
# for leaked secrets after the tests.
TEST_LOG_DIR := $(CURDIR)/.data/testlogs

test: services ## build, vet and test everything against real PostgreSQL and Redis, fuzz each target briefly, then scan the logs for secrets
	rm -rf $(TEST_LOG_DIR)
	$(GO) build ./... && $(GO) vet ./... && BOTFLEET_TEST_LOG_DIR=$(TEST_LOG_DIR) $(GO) test ./... -count=1 -p 2 -timeout 9m
	GO=$(GO) BOTFLEET_TEST_LOG_DIR=$(TEST_LOG_DIR) scripts/fuzz.sh $(FUZZTIME_SHORT)
	$(GO) run ./internal/testlog/logscan $(TEST_LOG_DIR)

fuzz: services ## run every Go fuzz target (scripts/fuzz.sh) for FUZZTIME each (default 1m)
	GO=$(GO) scripts/fuzz.sh $(FUZZTIME)

bench: services ## the user workload (docs/benchmarks.md): serve + 2 workers vs tgemu, prints a table
	$(GO) test ./bench -run '^$$' -bench Workload -benchtime 1x -count 1 -timeout $(BENCH_TIMEOUT)

bench-quick: services ## the workload at BENCH_SCALE=0.1 (about 10 min on the pre-issue-5 engine)
	BENCH_SCALE=$${BENCH_SCALE:-0.1} $(GO) test ./bench -run '^$$' -bench Workload -benchtime 1x -count 1 -timeout $(BENCH_TIMEOUT)

bench-micro: services ## every Go micro-benchmark of the packages (not the workload)
	$(GO) test $$($(GO) list ./... | grep -v '/bench$$') $(BENCH_FLAGS) -bench . -count=1

bench-webhook: services ## BenchmarkWebhook in ./api
	$(GO) test ./api $(BENCH_FLAGS) -bench BenchmarkWebhook

bench-send: services ## BenchmarkSend in ./telegram
	$(GO) test ./telegram $(BENCH_FLAGS) -bench BenchmarkSend

bench-broadcast: services ## BenchmarkBroadcast in ./broadcast
	$(GO) test ./broadcast $(BENCH_FLAGS) -bench BenchmarkBroadcast

# golangci-lint, pinned; installed on first use under the user's cache (outside the clone,
# so a fresh clone on the same machine reuses it).
GOLANGCI_VERSION ?= v2.15.0
GOLANGCI_DIR     ?= $(HOME)/.cache/botfleet-tools/golangci-lint-$(GOLANGCI_VERSION)
GOLANGCI         := $(GOLANGCI_DIR)/golangci-lint

$(GOLANGCI):
	GOBIN=$(GOLANGCI_DIR) $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_VERSION)

lint: $(GOLANGCI) ## golangci-lint (.golangci.yml: standard + gosec, bodyclose, sqlclosecheck, gofmt) and go mod tidy -diff
	$(GOLANGCI) run ./...
	$(GO) mod tidy -diff

docker: ## build the container image (IMAGE, default botfleet)
	docker build --build-arg VERSION=$(VERSION) -t $(IMAGE) .

clean: ## remove build and test outputs
	rm -rf bin coverage.out coverage.html coverage.txt *.test *.prof

clean-data: ## stop the private services and delete .data
	scripts/services.sh clean
