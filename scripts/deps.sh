#!/bin/sh
# Installs the Debian packages sealgate needs and brings its crypto stack to
# Debian's current versions.
#
# Usage: scripts/deps.sh [--current "PKG ..."] PKG...
#
# Every PKG is installed when missing. The --current packages (the crypto
# stack: OpenSSL, GPGME, GnuPG, GMime, libmilter, libyaml) are also upgraded
# whenever the installed version is not the candidate, because old builds
# of them have published flaws in exactly what a mail gateway does (see
# README, "Security floor"). The package lists are refreshed when they are
# older than SEALGATE_APT_MAX_AGE minutes (default 360), always under CI,
# and never with SEALGATE_APT_UPDATE=0. Prints the crypto stack's versions.
set -eu

current=""
if [ "${1:-}" = "--current" ]; then
	current=$2
	shift 2
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
	SUDO="sudo"
fi

installed_version() {
	dpkg-query -W -f='${Status} ${Version}\n' "$1" 2>/dev/null |
		awk '$3 == "installed" { print $4 }'
}

# "PKG CANDIDATE" for each package, from one apt-cache call.
candidates() {
	LC_ALL=C apt-cache policy "$@" 2>/dev/null | awk '
		/^[^ ].*:$/ { sub(/:$/, ""); pkg = $0 }
		/^  Candidate:/ { print pkg, $2 }'
}

lists_stale() {
	case "${SEALGATE_APT_UPDATE:-}" in
	0) return 1 ;;
	1) return 0 ;;
	esac
	[ "${CI:-}" = "true" ] && return 0
	age=${SEALGATE_APT_MAX_AGE:-360}
	fresh=$(find /var/lib/apt/lists -maxdepth 1 -name '*InRelease' \
		-mmin "-$age" 2>/dev/null | head -n 1)
	[ -z "$fresh" ]
}

apt_update() {
	echo "sealgate: refreshing Debian's package lists"
	$SUDO apt-get update -qq
}

updated=0
if [ -n "$current" ] && lists_stale; then
	apt_update
	updated=1
fi

todo=""
for p in "$@"; do
	[ -n "$(installed_version "$p")" ] || todo="$todo $p"
done
cands=""
if [ -n "$current" ]; then
	# shellcheck disable=SC2086
	cands=$(candidates $current)
	stale=$(echo "$cands" | while read -r pkg cand; do
		inst=$(installed_version "$pkg")
		if [ "$cand" = "(none)" ]; then
			echo "sealgate: package $pkg is not known to apt" >&2
		elif [ "$inst" != "$cand" ]; then
			echo "$pkg"
		fi
	done)
	for p in $stale; do
		case " $todo " in *" $p "*) ;; *) todo="$todo $p" ;; esac
	done
fi

if [ -n "$todo" ]; then
	[ "$updated" -eq 1 ] || apt_update
	echo "sealgate: installing or upgrading Debian packages:$todo"
	# Postfix asks how to configure the system instance; the tests run
	# their own.
	echo "postfix postfix/main_mailer_type select No configuration" |
		$SUDO debconf-set-selections
	# Naming a package makes apt-get install its candidate version.
	# shellcheck disable=SC2086
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq \
		--no-install-recommends $todo >/dev/null
	# shellcheck disable=SC2086
	[ -z "$current" ] || cands=$(candidates $current)
fi

[ -n "$current" ] || exit 0
status=0
line=""
for pc in $(echo "$cands" | tr ' ' '='); do
	pkg=${pc%%=*}
	cand=${pc#*=}
	inst=$(installed_version "$pkg")
	line="$line $pkg=${inst:-missing}"
	if [ "$inst" != "$cand" ]; then
		echo "sealgate: $pkg is ${inst:-not installed}, Debian's current version is $cand" >&2
		status=1
	fi
done
echo "sealgate: crypto stack:$line"
[ "$status" -eq 0 ] || echo "sealgate: the crypto stack is not at Debian's current versions" >&2
exit "$status"
