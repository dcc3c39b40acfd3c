#!/usr/bin/env bash
# Boot test of the guest image under QEMU (TCG): builds the image with testdata/smoke-init as
# the agent, boots it, and waits for smoke-init's verdict: modules from /etc/berth/modules load,
# the root disk (virtio-blk, serial "berth-root") mounts read-only, dockerd starts and runs a
# container.
#
#   installer/image/testdata/boot-smoke.sh --arch amd64|arm64 [--out DIR] [--cache DIR]
#
# Needs go, qemu-system-x86 (amd64) or qemu-system-arm (arm64), and what build.sh needs.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$HERE/../../.." && pwd)
ARCH='' OUT='' CACHE_ARGS=()
while (($#)); do
	case $1 in
	--arch) ARCH=$2; shift 2 ;;
	--out) OUT=$2; shift 2 ;;
	--cache) CACHE_ARGS=(--cache "$2"); shift 2 ;;
	*) echo "usage: $0 --arch amd64|arm64 [--out DIR] [--cache DIR]" >&2; exit 2 ;;
	esac
done
[[ $ARCH == amd64 || $ARCH == arm64 ]] || { echo "--arch amd64|arm64" >&2; exit 2; }
# Its own output dir: the smoke agent must not end up in a real image's initrd.
OUT=${OUT:-$REPO_ROOT/_output/image-smoke-$ARCH}
mkdir -p "$OUT"

(cd "$REPO_ROOT" && CGO_ENABLED=0 GOOS=linux GOARCH=$ARCH go build -trimpath -o "$OUT/smoke-init" ./installer/image/testdata/smoke-init)
GO=go "$REPO_ROOT/tools/build.sh" --out "$OUT" --goos linux --goarch "$ARCH" --only "registry engine"
"$REPO_ROOT/installer/image/build.sh" --arch "$ARCH" --agent "$OUT/smoke-init" --registry "$OUT/berth-registry" \
	--engine "$OUT/engine" --out "$OUT" "${CACHE_ARGS[@]}"

case $ARCH in
amd64) QEMU=(qemu-system-x86_64 -M q35 -cpu max) CONSOLE=ttyS0 ;;
# pauth-impdef: QEMU's own pointer-auth algorithm, much cheaper under TCG than the real one.
arm64) QEMU=(qemu-system-aarch64 -M virt -cpu "max,pauth-impdef=on") CONSOLE=ttyAMA0 ;;
esac
ACCEL=tcg
if [[ $ARCH == amd64 && -w /dev/kvm ]] && grep -qE 'vmx|svm' /proc/cpuinfo; then ACCEL=kvm; fi

LOG=$OUT/console.log
start=$SECONDS
# The image is opened read-only: the guest must never need to write it.
timeout 600 "${QEMU[@]}" -accel "$ACCEL" -smp 2 -m 2048 -nographic -no-reboot \
	-kernel "$OUT/vmlinuz" -initrd "$OUT/initrd.img" -append "console=$CONSOLE panic=-1 quiet" \
	-drive if=none,id=root,file="$OUT/root.img",format=raw,readonly=on \
	-device virtio-blk-pci,drive=root,serial=berth-root \
	</dev/null >"$LOG" 2>&1 || true
echo "boot-smoke($ARCH): $((SECONDS - start))s in QEMU ($ACCEL), console log $LOG" >&2
grep -a 'smoke:\|^+ \|container-ran\|BERTH-SMOKE' "$LOG" >&2 || true
grep -aq 'BERTH-SMOKE: OK' "$LOG"
