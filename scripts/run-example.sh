#!/bin/sh
# Demo run (`make run`): imports the example identities (the partners' public
# keys and certificates, the internal users' keys, the example CA) into the
# keystore named in the policy, shows the Postfix settings to use, then runs
# the milter in the foreground on 127.0.0.1:8891. Stop it with Ctrl-C.
#
# Usage: scripts/run-example.sh SEALGATE_BIN POLICY_FILE
set -eu

if [ $# -ne 2 ]; then
	echo "usage: $0 SEALGATE_BIN POLICY_FILE" >&2
	exit 1
fi
bin=$1
policy=$2
root=$(CDPATH= cd -- "$(dirname -- "$0")/.." && pwd)
keys="$root/keys-example/openpgp"
certs="$root/keys-example/smime"

[ -x "$bin" ] || { echo "run-example: $bin: not an executable (run 'make build')" >&2; exit 1; }
[ -r "$policy" ] || { echo "run-example: $policy: cannot read policy file" >&2; exit 1; }

# EXAMPLE identities, see keys-example/README.md. S/MIME certificates are
# used only when they chain to a trust anchor: first the example CA as one.
# Then the public keys and certificates of the external correspondents, and
# the internal users' secret keys (OpenPGP) and keys with certificates
# (PKCS#12, empty password) for signing and decrypting.
echo "== importing example keys into the keystore of $policy"
"$bin" keys -c "$policy" import --trust-anchor "$certs/ca.pem"
"$bin" keys -c "$policy" import \
	"$keys/carol.pub.asc" "$keys/dave.pub.asc" "$keys/erin.pub.asc" \
	"$keys/alice.sec.asc" "$keys/bob.sec.asc" \
	"$certs/frank.pem" "$certs/alice.p12" "$certs/bob.p12"

echo
echo "== keystore"
"$bin" keys -c "$policy" list

# gateway.spool_dir of policy.yaml.example: spool/ next to it, private to the gateway.
if [ ! -d "$root/spool" ]; then
	mkdir -m 0700 "$root/spool"
fi

cat <<'EOF'

== Postfix: add to main.cf, then run 'postfix reload'

smtpd_milters = inet:127.0.0.1:8891
non_smtpd_milters = inet:127.0.0.1:8891
milter_default_action = tempfail
milter_protocol = 6

tempfail makes Postfix keep mail (and retry) while the gateway is down;
never use 'accept', which would send mail in clear.

== Test: in another terminal

swaks --server 127.0.0.1 --from alice@example.com --to carol@partner.example
swaks --server 127.0.0.1 --from alice@example.com --to frank@smime.example

The first is encrypted with OpenPGP, the second with S/MIME. The gateway
logs its decisions below. The example domains do not exist, so the
encrypted messages stay in Postfix's queue: 'postqueue -p' lists them,
'postcat -bh -q QUEUEID' shows one; keys-example/README.md shows how to
decrypt them with carol's and frank's keys, and how to get a signed
message (rule signed-list: the sender must log in with SMTP AUTH).

== sealgate milter on inet:8891@127.0.0.1 (Ctrl-C to stop)
EOF

exec "$bin" milter -c "$policy" -s inet:8891@127.0.0.1 -f
