#!/bin/sh
# Regenerates the EXAMPLE identities in keys-example/: OpenPGP keys in
# openpgp/ and S/MIME certificates and keys in smime/.
# NOT FOR PRODUCTION: the secret keys written here are published in the repository.
#
# Usage: make-keys.sh [openpgp|smime|all]     (default: all)
#
# OpenPGP: every identity has an ed25519 primary key + cv25519 encryption
# subkey, no passphrase, no expiry. Keys are made in a throwaway GnuPG home
# under /tmp (short path, as gpg-agent socket paths are limited to about 107
# bytes) with all network lookups off; the home and its agent are removed
# afterwards.
#
# S/MIME: a throwaway example CA (RSA 3072) issues RSA 3072 certificates for
# email protection, valid for ten years: smime/ca.pem is the CA certificate,
# NAME.pem and NAME.key (unencrypted) the certificate and private key of
# alice, bob and frank, NAME.p12 the same for alice and bob as PKCS#12 with
# an empty password. The CA's private key lives only in a temporary
# directory under /tmp and is removed afterwards, so nothing can be issued
# later in the example CA's name.
set -eu

here=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd)

what=${1:-all}
case $what in
openpgp | smime | all) ;;
*)
	echo "usage: $0 [openpgp|smime|all]" >&2
	exit 1
	;;
esac

# Created one day back, so that a machine whose clock is a little behind
# does not reject keys or certificates as "created in the future".
created=$(($(date +%s) - 86400))

work=$(mktemp -d /tmp/sg-keys.XXXXXX)
cleanup() {
	if [ -d "$work/gnupg" ]; then
		gpgconf --homedir "$work/gnupg" --kill all >/dev/null 2>&1 || true
	fi
	rm -rf "$work"
	rm -f "$here"/openpgp/*.tmp "$here"/smime/*.tmp
}
trap cleanup EXIT
trap 'exit 1' HUP INT PIPE TERM

# Moves the files NAME.tmp of directory $1 to NAME (written completely first,
# so that an interrupted run leaves no half-written file behind).
install_tmp() {
	for f in "$1"/*.tmp; do
		chmod 644 "$f"
		mv "$f" "${f%.tmp}"
	done
}

gpg_batch() {
	gpg --batch --quiet --pinentry-mode loopback --passphrase '' "$@"
}

make_openpgp() {
	out="$here/openpgp"
	GNUPGHOME="$work/gnupg"
	export GNUPGHOME
	mkdir -m 700 "$GNUPGHOME"
	cat >"$GNUPGHOME/gpg.conf" <<'EOF'
no-auto-key-retrieve
disable-dirmngr
trust-model always
EOF

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
		install_tmp "$out"
		fpr=$(gpg --batch --with-colons --list-keys "$addr" | awk -F: '$1 == "fpr" { print $10; exit }')
		echo "make-keys: openpgp/$name.pub.asc $name.sec.asc  $fpr  $uid"
	done
}

# Runs openssl quietly; shows its messages only when it fails.
openssl_quiet() {
	if ! openssl "$@" 2>"$work/openssl.log"; then
		cat "$work/openssl.log" >&2
		echo "make-keys: openssl $1 failed" >&2
		exit 1
	fi
}

# $created as an ASN.1 time for `openssl ca -startdate` (`openssl req` and
# `openssl x509` of OpenSSL 3.0 cannot set a start date). GNU date, else BSD.
start_date() {
	date -u -d "@$created" +%Y%m%d%H%M%SZ 2>/dev/null ||
		date -u -r "$created" +%Y%m%d%H%M%SZ
}

# SHA-256 fingerprint of the certificate in file $1, as `sealgate keys` shows it.
sha256_of() {
	openssl x509 -in "$1" -noout -fingerprint -sha256 | sed 's/.*=//; s/://g'
}

# Issues a certificate with `openssl ca`: $1 name (new key $ca/$1.key,
# certificate $ca/$1.pem), $2 subject, $3 extension section of ca.cnf, $4
# days of validity; further arguments go to `openssl ca`.
issue() {
	base=$1
	subject=$2
	ext=$3
	valid=$4
	shift 4
	openssl_quiet req -new -newkey rsa:3072 -nodes -keyout "$ca/$base.key" \
		-subj "$subject" -out "$ca/$base.csr"
	openssl_quiet ca -batch -config "$ca/ca.cnf" -notext \
		-startdate "$(start_date)" -days "$valid" -extensions "$ext" \
		-in "$ca/$base.csr" -out "$ca/$base.pem" "$@"
}

make_smime() {
	out="$here/smime"
	ca="$work/ca"
	mkdir -m 700 "$ca" "$ca/issued"
	: >"$ca/index.txt"
	cat >"$ca/ca.cnf" <<EOF
[ ca ]
default_ca = example_ca

[ example_ca ]
dir             = $ca
database        = \$dir/index.txt
new_certs_dir   = \$dir/issued
certificate     = \$dir/ca.pem
private_key     = \$dir/ca.key
rand_serial     = yes
default_md      = sha256
policy          = any_name
unique_subject  = no
copy_extensions = none
email_in_dn     = no
preserve        = yes

[ any_name ]
organizationName = optional
commonName       = supplied

[ ca_ext ]
basicConstraints     = critical, CA:TRUE
keyUsage             = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash

[ user_ext ]
basicConstraints       = critical, CA:FALSE
keyUsage               = critical, digitalSignature, keyEncipherment
extendedKeyUsage       = emailProtection
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid
subjectAltName         = email:\$ENV::SG_EMAIL
EOF
	org="/O=sealgate example - NOT FOR PRODUCTION"
	SG_EMAIL=
	export SG_EMAIL

	# The CA outlives every certificate it issues (ten years) by a few days.
	issue ca "$org/CN=sealgate Example CA - NOT FOR PRODUCTION" ca_ext 3660 \
		-selfsign -keyfile "$ca/ca.key"
	cp "$ca/ca.pem" "$ca/ca.pem.tmp"

	# name|real name|address|pkcs12 (internal users: the gateway holds their
	# keys; external partners: it holds only their certificates)
	for entry in \
		"alice|Alice Example|alice@example.com|p12" \
		"bob|Bob Example|bob@example.com|p12" \
		"frank|Frank Partner|frank@smime.example|"; do
		name=${entry%%|*}
		rest=${entry#*|}
		real=${rest%%|*}
		rest=${rest#*|}
		SG_EMAIL=${rest%%|*}
		p12=${rest#*|}

		issue "$name" "$org/CN=$real" user_ext 3650
		cp "$ca/$name.pem" "$ca/$name.pem.tmp"
		cp "$ca/$name.key" "$ca/$name.key.tmp"
		files="$name.pem $name.key"
		if [ -n "$p12" ]; then
			# Empty password: `sealgate keys import` takes it without
			# --passphrase-file. The CA certificate goes with it, for
			# mail programs that import the file.
			openssl_quiet pkcs12 -export -in "$ca/$name.pem" \
				-inkey "$ca/$name.key" -certfile "$ca/ca.pem" \
				-name "$real" -passout pass: -out "$ca/$name.p12.tmp"
			files="$files $name.p12"
		fi
		echo "make-keys: smime/$files  $(sha256_of "$ca/$name.pem")  $real <$SG_EMAIL>"
	done

	mkdir -p "$out"
	mv "$ca"/*.tmp "$out"/
	install_tmp "$out"
	echo "make-keys: smime/ca.pem  $(sha256_of "$out/ca.pem")  (the CA's private key is not kept)"
}

case $what in
openpgp) make_openpgp ;;
smime) make_smime ;;
all)
	make_openpgp
	make_smime
	;;
esac
