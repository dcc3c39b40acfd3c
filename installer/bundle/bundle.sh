#!/usr/bin/env bash
# Pack a built guest image into a versioned bundle for platforms that cannot build it
# (macOS, Windows): berth install --image-url, or berth start with BERTH_IMAGE_URL, download
# it, check it against the detached checksum and unpack it into ~/.berth/_images/<arch>.
#
#   installer/bundle/bundle.sh --arch amd64|arm64 --version VERSION --image DIR --out DIR
#
# Writes into the --out DIR:
#   berth-image-<version>-<arch>.tar.gz         vmlinuz, initrd.img, root.img, manifest.json
#                                               (and rootfs.tar when the image has one), as
#                                               plain files at the top level, owner 0:0, 0644
#   berth-image-<version>-<arch>.tar.gz.sha256  "<sha256>  <bundle name>" (sha256sum -c format)
#
# The tarball is reproducible: sorted names, fixed owner and mode, mtime from
# SOURCE_DATE_EPOCH (default: the manifest's mtime), gzip without name or timestamp. A bundle
# newer than every input is left as it is. Needs GNU tar, gzip (pigz when present), sha256sum.
set -Eeuo pipefail
trap 'echo "bundle.sh: line $LINENO: \"$BASH_COMMAND\" failed" >&2' ERR

usage() { echo "usage: $0 --arch amd64|arm64 --version VERSION --image DIR --out DIR" >&2; exit 2; }
arch= version= image= out=
while [ $# -gt 0 ]; do
	case $1 in
	--arch) arch=${2:?}; shift 2 ;;
	--version) version=${2:?}; shift 2 ;;
	--image) image=${2:?}; shift 2 ;;
	--out) out=${2:?}; shift 2 ;;
	*) usage ;;
	esac
done
[ -n "$arch" ] && [ -n "$version" ] && [ -n "$image" ] && [ -n "$out" ] || usage
case $arch in amd64 | arm64) ;; *) echo "bundle.sh: --arch $arch: want amd64 or arm64" >&2; exit 2 ;; esac
# The version becomes part of a file name and a URL: keep it to a safe alphabet.
case $version in *[!A-Za-z0-9._+-]*) echo "bundle.sh: --version $version: use letters, digits and . _ + - only" >&2; exit 2 ;; esac

files=(vmlinuz initrd.img root.img manifest.json)
for f in "${files[@]}"; do
	if [ ! -f "$image/$f" ]; then
		echo "bundle.sh: $image/$f is missing: build the image first (make image IMAGE_ARCHES=$arch)" >&2
		exit 1
	fi
done
[ -f "$image/rootfs.tar" ] && files+=(rootfs.tar)
if ! grep -q "\"arch\": *\"$arch\"" "$image/manifest.json"; then
	echo "bundle.sh: $image/manifest.json is not for $arch" >&2
	exit 1
fi

name="berth-image-$version-$arch.tar.gz"
mkdir -p "$out"
bundle="$out/$name"
uptodate=1
[ -f "$bundle" ] && [ -f "$bundle.sha256" ] || uptodate=0
for f in "${files[@]}"; do
	[ "$uptodate" = 1 ] && [ "$image/$f" -nt "$bundle" ] && uptodate=0
done
if [ "$uptodate" = 1 ]; then
	echo "bundle.sh: $bundle is up to date"
	exit 0
fi

gz=(gzip -n -6)
command -v pigz >/dev/null 2>&1 && gz=(pigz -n -6)
mtime=${SOURCE_DATE_EPOCH:-$(stat -c %Y "$image/manifest.json")}
tmp=$(mktemp "$out/.$name.XXXXXX")
trap 'rm -f "$tmp"' EXIT
tar -C "$image" --format=gnu --sort=name --owner=0 --group=0 --numeric-owner --mode=0644 \
	--mtime="@$mtime" -cf - "${files[@]}" | "${gz[@]}" >"$tmp"
chmod 0644 "$tmp"
sum=$(sha256sum "$tmp" | cut -d' ' -f1)
mv "$tmp" "$bundle"
printf '%s  %s\n' "$sum" "$name" >"$bundle.sha256"
echo "bundle.sh: $bundle ($(du -h "$bundle" | cut -f1)), sha256 $sum"
