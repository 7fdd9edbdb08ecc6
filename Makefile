# local-assistant — the two commands that matter: `make run` and `make test`.
#
# Both set up a fresh Debian/Ubuntu machine first (apt packages when missing, using sudo when
# not root; Rust through rustup when cargo is missing).

SHELL := /bin/bash
export PATH := $(HOME)/.cargo/bin:$(PATH)
CARGO ?= cargo
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# build-essential: the C compiler for SQLite (rusqlite bundled); systemd: systemd-analyze for
# the unit's security test; curl/ca-certificates: rustup on a machine without Rust.
APT_PACKAGES := build-essential pkg-config systemd curl ca-certificates

.PHONY: run test bench deps toolchain build lint clean

deps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "make: installing system packages:$$missing"; \
	  $(SUDO) apt-get update -q && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi

toolchain: deps
	@command -v $(CARGO) >/dev/null || { \
	  echo "make: cargo not found; installing Rust with rustup"; \
	  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal -c clippy -c rustfmt; }
	@if command -v rustup >/dev/null; then \
	  rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy; \
	  rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt; \
	fi

build: toolchain
	$(CARGO) build --release --locked

# Serve on the embedded defaults: 127.0.0.1:8080, state under ./data, token in ./data/api-token.
run: build
	@echo "local-assistant: http://127.0.0.1:8080 — API token: ./data/api-token (created at first start)"
	./target/release/local-assistant serve

lint: toolchain
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

test: lint
	$(CARGO) test --locked --all-targets

bench: toolchain
	$(CARGO) bench --locked --bench inbound

clean:
	$(CARGO) clean
