#!/bin/sh
# Sign berth binaries with the virtualization entitlement (installer/macos/berth.entitlements).
#
#   installer/macos/sign.sh bin/berth [more binaries or .app bundles...]
#
# A bundle (Berth.app, see bundle.sh) is signed as a whole after the binaries nested in it.
#
# Ad hoc (codesign -s -) by default, which is what a local build needs. With
# BERTH_SIGN_IDENTITY set ("Developer ID Application: Example (TEAMID)" or its SHA-1) the
# named identity signs, with the hardened runtime and a secure timestamp as notarization
# requires; BERTH_SIGN_FLAGS replaces those extra flags (e.g. empty for offline test signing).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
entitlements="$here/berth.entitlements"

if [ "$#" -lt 1 ]; then
	echo "usage: $0 BINARY..." >&2
	exit 2
fi
if ! command -v codesign >/dev/null 2>&1; then
	echo "sign.sh: codesign not found: signing needs macOS with the Xcode command line tools (xcode-select --install); $(uname -s) cannot sign Mach-O binaries" >&2
	exit 1
fi
if [ ! -f "$entitlements" ]; then
	echo "sign.sh: $entitlements missing" >&2
	exit 1
fi

identity="${BERTH_SIGN_IDENTITY:--}"
if [ "$identity" = "-" ]; then
	default_flags=""
else
	default_flags="--options runtime --timestamp"
fi
flags="${BERTH_SIGN_FLAGS-$default_flags}"

for bin in "$@"; do
	if [ ! -f "$bin" ] && ! { [ -d "$bin" ] && [ "${bin%.app}" != "$bin" ]; }; then
		echo "sign.sh: $bin: no such file" >&2
		exit 1
	fi
	# $flags is split on purpose: it holds several options.
	# shellcheck disable=SC2086
	codesign --force --entitlements "$entitlements" $flags --sign "$identity" "$bin"
	codesign --verify --strict "$bin"
	if ! codesign --display --entitlements - "$bin" 2>/dev/null | grep -q com.apple.security.virtualization; then
		echo "sign.sh: $bin: signed, but the virtualization entitlement is not in the signature" >&2
		exit 1
	fi
	if [ "$identity" = "-" ]; then
		echo "sign.sh: $bin: signed ad hoc with the virtualization entitlement"
	else
		echo "sign.sh: $bin: signed by $identity with the virtualization entitlement"
	fi
done
