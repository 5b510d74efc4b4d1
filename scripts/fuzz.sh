#!/bin/sh
# Runs the libFuzzer targets of tests/fuzz (make fuzz).
#
# Usage: scripts/fuzz.sh BUILD_DIR SECONDS [TARGET...]
#
# BUILD_DIR is a build configured with -DSEALGATE_FUZZ=ON (clang) whose
# fuzz_TARGET binaries are built. Each target runs SECONDS seconds, one
# job, one after the other. Its corpus lives in BUILD_DIR/fuzz/corpus/TARGET
# (seeded from tests/fuzz/corpus/TARGET and tests/fuzz/crashes/TARGET,
# which are only read), what it finds goes to BUILD_DIR/fuzz/crashes/TARGET
# and its output to BUILD_DIR/fuzz/TARGET.log. Exits 1 when a target found
# a crash, leak, timeout or out-of-memory input.
set -eu

if [ $# -lt 2 ]; then
	echo "usage: $0 BUILD_DIR SECONDS [TARGET...]" >&2
	exit 1
fi
build=$(cd "$1" && pwd)
seconds=$2
shift 2
src=$(cd "$(dirname "$0")/.." && pwd)
targets=${*:-inbound outbound policy openpgp cms split_signed}

# The largest input worth trying: messages hold a few attachments' worth
# (the outbound seeds include one over the policy's size_over rule), the
# other inputs are single objects.
max_len() {
	case "$1" in
	inbound|outbound) echo 65536 ;;
	split_signed) echo 8192 ;;
	*) echo 16384 ;;
	esac
}

# Stops the gpg-agent of every GnuPG home under $1 (the targets' keystores
# and the homes sealgate makes to decrypt) and removes $1: after a crash
# libFuzzer ends the process before the targets clean up.
remove_tmp() {
	find "$1" -name gpg.conf 2>/dev/null | while read -r conf; do
		gpgconf --homedir "$(dirname "$conf")" --kill all 2>/dev/null || true
	done
	rm -rf "$1"
}

# A value of the "stat::NAME: VALUE" lines libFuzzer prints at the end.
stat() {
	sed -n "s/^stat::$1: *//p" "$2" | tail -n 1
}

# A report with the stack that led to it; UBSan's default has none.
UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
export UBSAN_OPTIONS

found=0
for t in $targets; do
	bin="$build/tests/fuzz/fuzz_$t"
	if [ ! -x "$bin" ]; then
		echo "fuzz: $bin missing (build with -DSEALGATE_FUZZ=ON)" >&2
		exit 1
	fi
	corpus="$build/fuzz/corpus/$t"
	crashes="$build/fuzz/crashes/$t"
	log="$build/fuzz/$t.log"
	mkdir -p "$corpus" "$crashes"
	before=$(ls "$crashes" | wc -l)
	echo "fuzz: $t for ${seconds}s (max_len $(max_len "$t"), log $log)"
	rc=0
	# A short directory: GnuPG's sockets must fit in 107 bytes.
	tmp=$(mktemp -d /tmp/sgfuzzrun.XXXXXX)
	TMPDIR=$tmp "$bin" -max_total_time="$seconds" -max_len="$(max_len "$t")" \
		-timeout=60 -print_final_stats=1 \
		-artifact_prefix="$crashes/" \
		"$corpus" "$src/tests/fuzz/corpus/$t" "$src/tests/fuzz/crashes/$t" \
		>"$log" 2>&1 || rc=$?
	remove_tmp "$tmp"
	after=$(ls "$crashes" | wc -l)
	echo "fuzz: $t: exit $rc, $(stat number_of_executed_units "$log") runs" \
		"($(stat average_exec_per_sec "$log")/s), corpus" \
		"$(ls "$corpus" | wc -l) inputs, $((after - before)) new in $crashes"
	if [ "$rc" -ne 0 ] || [ "$after" -ne "$before" ]; then
		found=1
		grep -m 5 -E "ERROR|SUMMARY|runtime error|fuzz:" "$log" | sed 's/^/  /' || true
	fi
done
if [ "$found" -ne 0 ]; then
	echo "fuzz: inputs to look at are in $build/fuzz/crashes/; once fixed, copy" \
		"each to tests/fuzz/crashes/TARGET/ (replayed by ctest -L fuzz)"
	exit 1
fi
