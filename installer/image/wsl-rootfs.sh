#!/usr/bin/env bash
# Builds the root filesystem tarball that the WSL2 driver imports (`wsl --import`), from an
# image built by build.sh: the same packages as root.img, plus berth-agent, which WSL starts
# as an ordinary process (WSL owns the kernel, init, network and power).
#
#   installer/image/wsl-rootfs.sh --image DIR --agent PATH --out FILE
#
# The root image is read with debugfs (no loop mount, so no privileges beyond reading it).
set -euo pipefail

IMAGE= AGENT= OUT=
while (($#)); do
	case $1 in
	--image) IMAGE=${2:?}; shift 2 ;;
	--agent) AGENT=${2:?}; shift 2 ;;
	--out) OUT=${2:?}; shift 2 ;;
	*) echo "usage: $0 --image DIR --agent PATH --out FILE" >&2; exit 2 ;;
	esac
done
[[ -n $IMAGE && -n $AGENT && -n $OUT ]] || { echo "usage: $0 --image DIR --agent PATH --out FILE" >&2; exit 2; }
[[ -f $IMAGE/root.img ]] || { echo "wsl-rootfs: $IMAGE/root.img missing: run make image first" >&2; exit 1; }
command -v debugfs >/dev/null || { echo "wsl-rootfs: debugfs missing: apt-get install e2fsprogs" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
root=$tmp/root
mkdir -p "$root"
debugfs -R "rdump / $root" "$IMAGE/root.img" 2>/dev/null
[[ -x $root/usr/sbin/dockerd ]] || { echo "wsl-rootfs: $IMAGE/root.img has no dockerd" >&2; exit 1; }
# rdump keeps modes but not the sticky bit.
chmod 1777 "$root/tmp" "$root/var/tmp"
install -D -m 0755 "$AGENT" "$root/usr/local/bin/berth-agent"
# WSL writes /etc/resolv.conf itself; the VM image's link to /run/resolv.conf would dangle.
rm -f "$root/etc/resolv.conf"
cat >"$root/etc/wsl.conf" <<'CONF'
# berth's engine distribution: WSL provides the network and DNS, berth-agent runs the engine.
[boot]
systemd = false
[network]
generateResolvConf = true
hostname = berth
[automount]
# berth mounts the shares it is configured with (drvfs); no blanket /mnt/c.
enabled = false
CONF
mkdir -p "$(dirname "$OUT")"
tar --numeric-owner -C "$root" -cf "$OUT.tmp" .
mv -f "$OUT.tmp" "$OUT"
echo "wsl-rootfs: $OUT ($(du -h "$OUT" | cut -f1))"
