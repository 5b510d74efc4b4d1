# Thin wrapper around CMake/CTest. See README.md.
BUILD    ?= build
ASAN_BUILD ?= build-asan
POLICY   ?= policy.yaml.example
# The demo's private Postfix, its delivered mail and logs (make run/demo).
DEMO_DIR ?= $(BUILD)/demo
JOBS     ?= $(shell nproc 2>/dev/null || echo 2)

# Debian packages: build, run, test.
PKGS = gcc make cmake pkg-config libcmocka-dev postfix swaks miltertest strace python3
# The crypto stack: always brought to Debian's current (security) version,
# not only installed when missing (README, "Security floor").
CRYPTO_PKGS = libssl3 libssl-dev openssl libgpgme11 libgpgme-dev gnupg gpg \
       gpgsm gpg-agent gpgconf dirmngr libgmime-3.0-0 libgmime-3.0-dev \
       libmilter1.0.1 libmilter-dev libyaml-0-2 libyaml-dev

.PHONY: all deps build run demo test test-asan bench clean

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

# End to end through a private Postfix, per operation in process, peak
# RSS; writes bench/results/latest.md (README, "Performance").
# BENCH_COUNT messages per end-to-end run, BENCH_ROUNDS runs per figure.
BENCH_COUNT  ?= 2000
BENCH_ROUNDS ?= 3
bench: build
	@python3 bench/bench.py --bin $(BUILD)/sealgate --count $(BENCH_COUNT) \
	    --rounds $(BENCH_ROUNDS)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
