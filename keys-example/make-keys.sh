#!/bin/sh
# Regenerates the EXAMPLE OpenPGP identities in keys-example/openpgp/.
# NOT FOR PRODUCTION: the secret keys written here are published in the repository.
#
# Every identity: ed25519 primary key + cv25519 encryption subkey, no passphrase,
# no expiry. Keys are made in a throwaway GnuPG home under /tmp (short path, as
# gpg-agent socket paths are limited to about 107 bytes) with all network
# lookups off; the home and its agent are removed afterwards.
set -eu

here=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd)
out="$here/openpgp"

GNUPGHOME=$(mktemp -d /tmp/sg-keys.XXXXXX)
export GNUPGHOME
cleanup() {
	gpgconf --homedir "$GNUPGHOME" --kill all >/dev/null 2>&1 || true
	rm -rf "$GNUPGHOME"
	rm -f "$out"/*.tmp
}
trap cleanup EXIT
trap 'exit 1' HUP INT TERM

chmod 700 "$GNUPGHOME"
cat >"$GNUPGHOME/gpg.conf" <<'EOF'
no-auto-key-retrieve
disable-dirmngr
trust-model always
EOF

gpg_batch() {
	gpg --batch --quiet --pinentry-mode loopback --passphrase '' "$@"
}

# Creation time one day back, so that a machine whose clock is a little behind
# does not reject the keys as "created in the future".
created=$(($(date +%s) - 86400))

mkdir -p "$out"
# name|user id
for entry in \
	"alice|Alice Example <alice@example.com>" \
	"bob|Bob Example <bob@example.com>" \
	"carol|Carol Partner <carol@partner.example>" \
	"dave|Dave Partner <dave@partner.example>" \
	"erin|Erin Other <erin@other.example>"; do
	name=${entry%%|*}
	uid=${entry#*|}
	addr=${uid#*<}
	addr="<${addr%>}>"

	if ! gpg_batch --faked-system-time "$created" --quick-gen-key "$uid" future-default default never 2>"$GNUPGHOME/log"; then
		cat "$GNUPGHOME/log" >&2
		echo "make-keys: key generation for $uid failed" >&2
		exit 1
	fi
	gpg_batch --armor --export "$addr" >"$out/$name.pub.asc.tmp"
	gpg_batch --armor --export-secret-keys "$addr" >"$out/$name.sec.asc.tmp"
	[ -s "$out/$name.pub.asc.tmp" ] && [ -s "$out/$name.sec.asc.tmp" ] || {
		echo "make-keys: export of $uid failed" >&2
		exit 1
	}
	mv "$out/$name.pub.asc.tmp" "$out/$name.pub.asc"
	mv "$out/$name.sec.asc.tmp" "$out/$name.sec.asc"
	chmod 644 "$out/$name.pub.asc" "$out/$name.sec.asc"
	fpr=$(gpg --batch --with-colons --list-keys "$addr" | awk -F: '$1 == "fpr" { print $10; exit }')
	echo "make-keys: $name.pub.asc $name.sec.asc  $fpr  $uid"
done
