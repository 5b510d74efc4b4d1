# Thin wrapper around CMake/CTest. See README.md.
BUILD    ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
# make fuzz: seconds per target, and which targets (default: all).
SECONDS  ?= 60
FUZZ_TARGETS ?=
POLICY   ?= policy.yaml.example
# The demo's private Postfix, its delivered mail and logs (make run/demo).
DEMO_DIR ?= $(BUILD)/demo
JOBS     ?= $(shell nproc 2>/dev/null || echo 2)
# make install: where (PREFIX) and under which root (DESTDIR, for packages).
PREFIX   ?= /usr/local
DESTDIR  ?=

# Debian packages: build, run, test.
PKGS = gcc make cmake pkg-config libcmocka-dev postfix swaks miltertest strace python3 \
       systemd man-db libmicrohttpd-dev libpsl-dev publicsuffix locales \
       python3-prometheus-client
# The crypto stack: always brought to Debian's current (security) version,
# not only installed when missing (README, "Security floor").
CRYPTO_PKGS = libssl3 libssl-dev openssl libgpgme11 libgpgme-dev gnupg gpg \
       gpgsm gpg-agent gpgconf dirmngr libgmime-3.0-0 libgmime-3.0-dev \
       libmilter1.0.1 libmilter-dev libyaml-0-2 libyaml-dev librnp0 librnp-dev
# make fuzz: clang and its libFuzzer.
FUZZ_PKGS = clang libclang-rt-14-dev

.PHONY: all deps build run demo test test-asan fuzz bench install install-built clean

all: build

deps:
	@./scripts/deps.sh --current "$(CRYPTO_PKGS)" $(PKGS) $(CRYPTO_PKGS)

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

DEMO = python3 scripts/demo.py --bin $(BUILD)/sealgate --policy $(POLICY) \
       --dir $(DEMO_DIR)

# A private Postfix on 127.0.0.1:2525 with the gateway; Ctrl-C stops it.
run: build
	@$(DEMO) run

# The demo's messages sent and checked (against a running `make run`, or
# a demo started for the run).
demo: build
	@$(DEMO) send

# Every test on the normal build, then the unit and pipeline tests again
# under AddressSanitizer/UBSan.
test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)
	@$(MAKE) --no-print-directory test-asan

test-asan: deps
	@cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DSEALGATE_SANITIZE=ON >/dev/null
	@cmake --build $(ASAN_BUILD) -j $(JOBS)
	cd $(ASAN_BUILD) && ctest --output-on-failure -j $(JOBS) -L asan

# Each libFuzzer target of tests/fuzz for SECONDS seconds, in a clang
# build with ASan and UBSan, after replaying the seeds and crash inputs
# there (README, "Fuzzing").
fuzz:
	@./scripts/deps.sh --current "$(CRYPTO_PKGS)" $(PKGS) $(CRYPTO_PKGS) $(FUZZ_PKGS)
	@CC=clang cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo \
		-DSEALGATE_FUZZ=ON >/dev/null
	@cmake --build $(FUZZ_BUILD) -j $(JOBS) --target fuzz-targets
	@cd $(FUZZ_BUILD) && ctest --output-on-failure -L fuzz
	@./scripts/fuzz.sh $(FUZZ_BUILD) $(SECONDS) $(FUZZ_TARGETS)

# End to end through a private Postfix, per operation in process, peak
# RSS; writes bench/results/latest.md (README, "Performance").
# BENCH_COUNT messages per end-to-end run, BENCH_ROUNDS runs per figure.
BENCH_COUNT  ?= 2000
BENCH_ROUNDS ?= 3
bench: build
	@python3 bench/bench.py --bin $(BUILD)/sealgate --count $(BENCH_COUNT) \
	    --rounds $(BENCH_ROUNDS)

# The binary in $(PREFIX)/sbin, the manual pages, the example policy and
# README in $(PREFIX)/share/doc/sealgate, the systemd unit, tmpfiles.d and
# sysusers.d entries in $(PREFIX)/lib; all of it under $(DESTDIR) if set.
install: build
	@$(MAKE) --no-print-directory install-built

# The same, from what $(BUILD) holds, without building first.
install-built:
	DESTDIR="$(DESTDIR)" cmake --install $(BUILD) --prefix "$(PREFIX)"

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
