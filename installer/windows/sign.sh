#!/bin/sh
# Authenticode-sign Windows binaries and packages (berth.exe, the .msi) with osslsigncode.
#
#   installer/windows/sign.sh FILE...
#
# The signing key comes from the environment:
#   BERTH_WIN_PFX (+ BERTH_WIN_PFX_PASSWORD)     a PKCS#12 file with the certificate and key, or
#   BERTH_WIN_CERT + BERTH_WIN_KEY               PEM (or DER/SPC) certificate chain and key
#   BERTH_WIN_TIMESTAMP_URL                      optional RFC 3161 timestamp server, so the
#                                                signature outlives the certificate
#   BERTH_WIN_CAFILE                             optional CA bundle for the verification
#                                                (default: osslsigncode's system bundle)
# Each file is signed in place (SHA-256), then verified with `osslsigncode verify`.
set -eu

if [ "$#" -lt 1 ]; then
	echo "usage: $0 FILE..." >&2
	exit 2
fi
if ! command -v osslsigncode >/dev/null 2>&1; then
	echo "sign.sh: osslsigncode not found (apt-get install osslsigncode; brew install osslsigncode)" >&2
	exit 1
fi
if [ -z "${BERTH_WIN_PFX:-}" ] && { [ -z "${BERTH_WIN_CERT:-}" ] || [ -z "${BERTH_WIN_KEY:-}" ]; }; then
	echo "sign.sh: no signing key: set BERTH_WIN_PFX, or BERTH_WIN_CERT and BERTH_WIN_KEY" >&2
	exit 1
fi

# sign IN OUT: SHA-256 Authenticode signature with the configured key (and timestamp).
sign() {
	# ${…:+…} adds "-ts URL" only when a timestamp server is set.
	# shellcheck disable=SC2086
	if [ -n "${BERTH_WIN_PFX:-}" ]; then
		osslsigncode sign -pkcs12 "$BERTH_WIN_PFX" -pass "${BERTH_WIN_PFX_PASSWORD:-}" \
			-h sha256 -n Berth -i https://github.com/berth-dev/berth \
			${BERTH_WIN_TIMESTAMP_URL:+-ts "$BERTH_WIN_TIMESTAMP_URL"} -in "$1" -out "$2"
	else
		osslsigncode sign -certs "$BERTH_WIN_CERT" -key "$BERTH_WIN_KEY" \
			-h sha256 -n Berth -i https://github.com/berth-dev/berth \
			${BERTH_WIN_TIMESTAMP_URL:+-ts "$BERTH_WIN_TIMESTAMP_URL"} -in "$1" -out "$2"
	fi
}

for f in "$@"; do
	if [ ! -f "$f" ]; then
		echo "sign.sh: $f: no such file" >&2
		exit 1
	fi
	tmp="$f.signing"
	rm -f "$tmp"
	if ! sign "$f" "$tmp" >/dev/null; then
		rm -f "$tmp"
		echo "sign.sh: $f: osslsigncode sign failed" >&2
		exit 1
	fi
	mv "$tmp" "$f"
	if [ -n "${BERTH_WIN_CAFILE:-}" ]; then
		osslsigncode verify -CAfile "$BERTH_WIN_CAFILE" -in "$f" >/dev/null
	else
		osslsigncode verify -in "$f" >/dev/null
	fi
	echo "sign.sh: $f: signed and verified"
done
