#!/usr/bin/env bash
# Build the Windows package: berth-<version>-windows-amd64.msi from the files `make cross`
# wrote, optionally Authenticode-signed (the binaries first, then the package).
#
#   installer/windows/build.sh --version VERSION --cross DIR --out DIR [--sign]
#
# --cross  the cross-build root (_output/cross); files.txt names what is taken from it
# --sign   sign every .exe and then the .msi with sign.sh (needs BERTH_WIN_PFX or
#          BERTH_WIN_CERT + BERTH_WIN_KEY; see sign.sh)
# Needs wixl (Debian: apt-get install wixl). On Windows the same berth.wxs builds with WiX 3:
#   candle -dVersion=1.2.3 -dSourceDir=STAGE berth.wxs && light -o berth.msi berth.wixobj
set -Eeuo pipefail
trap 'echo "windows/build.sh: line $LINENO: \"$BASH_COMMAND\" failed" >&2' ERR

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
usage() { echo "usage: $0 --version VERSION --cross DIR --out DIR [--sign]" >&2; exit 2; }
version= cross= out= sign=0
while [ $# -gt 0 ]; do
	case $1 in
	--version) version=${2:?}; shift 2 ;;
	--cross) cross=${2:?}; shift 2 ;;
	--out) out=${2:?}; shift 2 ;;
	--sign) sign=1; shift ;;
	*) usage ;;
	esac
done
[ -n "$version" ] && [ -n "$cross" ] && [ -n "$out" ] || usage
case $version in *[!A-Za-z0-9._+-]*) echo "windows/build.sh: --version $version: use letters, digits and . _ + - only" >&2; exit 2 ;; esac
command -v wixl >/dev/null || { echo "windows/build.sh: wixl not found (apt-get install wixl), or build berth.wxs with WiX on Windows" >&2; exit 1; }

# MSI product versions are numeric (major.minor.build, major and minor < 256):
# v1.2.3-4-gabc → 1.2.3, a bare commit → 0.0.0.
msiversion=$(printf '%s' "$version" | sed -n 's/^v\{0,1\}\([0-9][0-9]*\.[0-9][0-9]*\.[0-9][0-9]*\).*/\1/p')
[ -n "$msiversion" ] || msiversion=0.0.0

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
while read -r src dest _; do
	case $src in '' | '#'*) continue ;; esac
	if [ ! -f "$cross/$src" ]; then
		echo "windows/build.sh: $cross/$src is missing: run make cross" >&2
		exit 1
	fi
	mkdir -p "$stage/$(dirname "$dest")"
	cp "$cross/$src" "$stage/$dest"
done <"$here/files.txt"

if [ "$sign" = 1 ]; then
	find "$stage" -name '*.exe' -type f | sort | while read -r f; do
		"$here/sign.sh" "$f"
	done
fi

mkdir -p "$out"
out=$(cd "$out" && pwd)
msi="$out/berth-$version-windows-amd64.msi"
# wixl resolves Source paths against the working directory.
(cd "$stage" && wixl -a x64 -D Version="$msiversion" -D SourceDir=. -o "$msi" "$here/berth.wxs")
[ "$sign" = 0 ] || "$here/sign.sh" "$msi"
echo "windows/build.sh: $msi"
