#!/bin/sh
# Benchmarks for `make bench`. Machines are shared and noisy, so every
# figure is reported as a ratio against a baseline measured in the same run:
#
#   encrypt  `sealgate process` encrypting a 14 KB message to one OpenPGP key,
#            against `gpg --encrypt` of the same bytes (the gpg start-up cost
#            both pay);
#   pass     `sealgate process` on mail that needs no encryption, against
#            `cat` of the same file (process start-up and parsing overhead).
#
# Usage: bench/run.sh SEALGATE_BIN [ROUNDS]
set -eu
bin=$1
rounds=${2:-30}
root=$(CDPATH= cd -- "$(dirname -- "$0")/.." && pwd)
tmp=$(mktemp -d /tmp/sgbench.XXXXXX)
trap 'gpgconf --homedir "$tmp/store/openpgp" --kill all 2>/dev/null || true; rm -rf "$tmp"' EXIT

cat >"$tmp/policy.yaml" <<EOF2
version: 1
gateway: { keystore: store, spool_dir: spool }
internal_domains: [example.com]
EOF2
"$bin" keys -c "$tmp/policy.yaml" import "$root/keys-example/openpgp/carol.pub.asc" >/dev/null

{
	printf 'From: alice@example.com\nTo: carol@partner.example\nSubject: bench\n'
	printf 'Content-Type: text/plain; charset=us-ascii\n\n'
	i=0
	while [ $i -lt 200 ]; do
		echo "line $i of the benchmark message, some seventy characters of text."
		i=$((i + 1))
	done
} >"$tmp/msg.eml"

now() { date +%s%N; }

# time_cmd NAME CMD...: runs CMD $rounds times, prints mean ms, stores ns.
time_cmd() {
	name=$1
	shift
	start=$(now)
	i=0
	while [ $i -lt "$rounds" ]; do
		"$@" >/dev/null 2>&1
		i=$((i + 1))
	done
	end=$(now)
	eval "t_$name=$(( (end - start) / rounds ))"
}

gpg_home="$tmp/store/openpgp"
fpr=$("$bin" keys -c "$tmp/policy.yaml" list | awk '{print $3}')

time_cmd gpg gpg --homedir "$gpg_home" --batch --trust-model always --armor \
	--encrypt -r "$fpr" -o - "$tmp/msg.eml"
time_cmd encrypt "$bin" process -c "$tmp/policy.yaml" --from alice@example.com \
	--to carol@partner.example -i "$tmp/msg.eml" -o "$tmp/out.eml"
time_cmd cat cat "$tmp/msg.eml"
time_cmd pass "$bin" process -c "$tmp/policy.yaml" --from alice@example.com \
	--to bob@example.com -i "$tmp/msg.eml" -o "$tmp/out.eml"

ms() { awk -v ns="$1" 'BEGIN { printf "%.2f", ns / 1e6 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

echo "sealgate benchmarks, $rounds rounds each, $(wc -c <"$tmp/msg.eml") byte message"
printf '%-44s %8s ms  baseline %8s ms  ratio %s\n' \
	"encrypt (process vs gpg --encrypt)" "$(ms "$t_encrypt")" "$(ms "$t_gpg")" \
	"$(ratio "$t_encrypt" "$t_gpg")"
printf '%-44s %8s ms  baseline %8s ms  ratio %s\n' \
	"pass-through (process vs cat)" "$(ms "$t_pass")" "$(ms "$t_cat")" \
	"$(ratio "$t_pass" "$t_cat")"
