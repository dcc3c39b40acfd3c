#!/usr/bin/env bash
# Build the berth guest image from Debian trixie (13) packages.
#
#   installer/image/build.sh --arch amd64|arm64 --agent PATH/TO/static/berth-agent
#                            --registry PATH/TO/static/berth-registry --engine DIR
#                            --out DIR [--cache DIR] [--refresh]
#
# Writes into DIR:
#   vmlinuz        Debian's kernel (amd64: bzImage; arm64: uncompressed arm64 Image, as vz needs)
#   initrd.img     gzip'd newc cpio: /init (the agent), /dev/console, the few modules needed to
#                  reach the root disk and the agent channel, and /etc/berth/modules (load order)
#   root.img       ext4 image (label berth-root), mounted read-only by the guest; it also holds
#                  the registry (tools/registry) as /usr/libexec/berth/registry and the Docker
#                  Engine (--engine DIR: dockerd and docker-proxy, tools/build.sh --only engine)
#   manifest.json  arch, kernel version, package versions, artifact checksums
#   .*.stamp .kver what each artifact was built from (+ its sha256); an artifact is rebuilt
#                  only when that changes, so a second run with nothing changed takes <1 s
#
# --cache DIR (default _output/cache) holds, per suite and arch, a private apt state (its own
# sources list, lists, empty dpkg status), the downloaded debs and the used part of the
# unpacked kernel; it can be deleted any time. --refresh forces apt-get update (done anyway
# when the lists are over a day old). The machine's own apt sources are never read: the
# suite's archive is named here (BERTH_DEBIAN_MIRROR and BERTH_DEBIAN_SECURITY_MIRROR override
# the URLs, e.g. for a snapshot.debian.org date), signed by Debian's archive keyring.
# testdata/boot-smoke.sh boots the result under QEMU and runs a container in it.
#
# Nothing runs inside the image at build time: packages are unpacked with dpkg-deb and the
# work their maintainer scripts would do is done here by hand (see fixup_rootfs).
# Needs root (file ownership in the image, mknod) and: apt, dpkg, tar, e2fsprogs, kmod, cpio, gzip.
set -Eeuo pipefail
# Say where an unexpected failure happened (set -e alone exits silently).
trap 'echo "build.sh: line $LINENO: \"$BASH_COMMAND\" failed" >&2' ERR

SUITE=trixie
DEBIAN_MIRROR=${BERTH_DEBIAN_MIRROR:-http://deb.debian.org/debian}
DEBIAN_SECURITY_MIRROR=${BERTH_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
DEBIAN_KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SCRIPT_PATH=$SCRIPT_DIR/$(basename "${BASH_SOURCE[0]}")
REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)
# The registry's and the engine's releases, for manifest.json (the binaries come from
# --registry and --engine).
REGISTRY_VERSION=$(. "$REPO_ROOT/tools/versions.env" && echo "$REGISTRY_VERSION")
ENGINE_RELEASE=$(. "$REPO_ROOT/tools/versions.env" && echo "$ENGINE_RELEASE")
ENGINE_VERSION=$(. "$REPO_ROOT/tools/versions.env" && echo "$ENGINE_MODULE@$ENGINE_VERSION")

# Packages of the root filesystem; apt resolves their dependency closure (no Recommends).
# usr-is-merged is named so that apt picks it over usrmerge (which drags in perl) for
# init-system-helpers' "usrmerge | usr-is-merged"; the image is built merged-/usr anyway.
# The Docker Engine itself (dockerd, docker-proxy) is built from its release (--engine, not
# Debian's docker.io 26.1); what it runs comes from Debian: containerd, runc, tini (as
# docker-init), nftables (`nft`, its default firewall backend here) and iptables (the
# backend of swarm nodes). xz-utils and pigz are what dockerd uses when present (xz layers,
# parallel gunzip); both are tiny. docker-cli is the guest's own docker CLI:
# `berth shell docker ...`, the arm64 test, the benches.
ROOT_PACKAGES=(
	docker-cli containerd runc tini nftables iptables
	e2fsprogs kmod busybox-static bash coreutils util-linux mount procps iproute2
	ca-certificates libc-bin base-files base-passwd usr-is-merged
	xz-utils pigz
)

# Kernel modules copied into root.img: what docker, its networks and volumes and the guest's
# devices use (globs, relative to /lib/modules/<kver>/). evdev + button (amd64: ACPI power
# button) or gpio_keys (arm64 virt) give the agent the power key. The rest of what Debian ships (GPUs,
# wifi, sound, exotic file systems, ...) is dropped, and so is any module whose dependencies
# are not all kept (it could not be loaded anyway).
root_module_globs() {
	local karch=$1
	printf '%s\n' \
		kernel/fs/{9p,autofs,binfmt_misc.ko,configfs,ext4,fat,fscache,fuse,jbd2,lockd} \
		kernel/fs/{mbcache.ko,netfs,nfs,nfs_common,nls,overlayfs,quota,squashfs} \
		kernel/net/{802,8021q,9p,bridge,core,dns_resolver,ife,ipv4,ipv6,key,llc,mpls,mptcp} \
		kernel/net/{netfilter,netlink,nsh,openvswitch,packet,psample,sched,sctp,sunrpc,tls} \
		kernel/net/{unix,vmw_vsock,xfrm,wireguard} \
		kernel/lib kernel/crypto "kernel/arch/$karch/crypto" "kernel/arch/$karch/lib" \
		kernel/drivers/virtio kernel/drivers/char/virtio_console.ko kernel/drivers/char/hw_random \
		kernel/drivers/block/{virtio_blk.ko,loop.ko,nbd.ko,zram} kernel/mm/zsmalloc.ko \
		kernel/drivers/md/{dm-mod.ko,dm-bufio.ko,dm-bio-prison.ko,dm-thin-pool.ko,persistent-data} \
		kernel/drivers/md/{dm-snapshot.ko,dm-crypt.ko,dm-zero.ko} kernel/drivers/dax/dax.ko \
		kernel/drivers/net/{virtio_net.ko,net_failover.ko,veth.ko,tun.ko,dummy.ko,macvlan.ko} \
		kernel/drivers/net/{tap.ko,macvtap.ko,ipvlan,vxlan,geneve.ko,bonding,ifb.ko,wireguard} \
		kernel/drivers/input/evdev.ko kernel/drivers/input/keyboard/gpio_keys.ko \
		kernel/drivers/acpi/button.ko
}
# Regex of module paths never worth shipping. vsock_loopback lets any process in the guest,
# a container's included, dial the guest's own vsock listeners (CID 1): the agent must be
# reachable from the host alone (docs/security.md).
readonly ROOT_MODULE_EXCLUDE='/test_[^/]*\.ko$|/vsock_loopback\.ko$'

# Big binaries in the packages that berth never runs: libnetwork's dnet and ovrouter test
# tools (bookworm's docker.io had them), and containerd's v1 shims (dockerd uses
# io.containerd.runc.v2).
PRUNE_FILES=(
	usr/bin/dnet usr/sbin/ovrouter
	usr/bin/containerd-shim usr/bin/containerd-shim-runc-v1
)

# Modules the initrd carries, in the order the agent should load them (their dependencies are
# added in front automatically): disk, console, network, vsock and share transports, and the
# file systems of the root image and the overlay. Names that are built into the kernel are
# skipped (af_packet, for DHCP's raw sockets, is built in on Debian today); a name that is
# neither a module nor built in fails the build (catches renames in a new kernel). The arch
# case below adds arch-specific ones.
INITRD_MODULES=(
	virtio virtio_ring virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_mmio
	virtio_blk virtio_console failover net_failover virtio_net virtio_rng virtio_balloon
	crc16 crc32c_generic libcrc32c mbcache jbd2 ext4 overlay
	vsock vmw_vsock_virtio_transport_common vmw_vsock_virtio_transport
	netfs 9pnet 9pnet_virtio 9p fuse virtiofs
	af_packet
)

log() { printf '[image/%s %4ss] %s\n' "${ARCH:-?}" "$SECONDS" "$*" >&2; }
die() { printf 'build.sh: error: %s\n' "$*" >&2; exit 1; }

usage() {
	sed -n '2,5p' "$SCRIPT_PATH" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

# ---------------------------------------------------------------------------- arguments

ARCH='' AGENT='' REGISTRY='' ENGINE='' OUT='' CACHE='' REFRESH=0
while (($#)); do
	case $1 in
	--arch) ARCH=${2:?}; shift 2 ;;
	--agent) AGENT=${2:?}; shift 2 ;;
	--registry) REGISTRY=${2:?}; shift 2 ;;
	--engine) ENGINE=${2:?}; shift 2 ;;
	--out) OUT=${2:?}; shift 2 ;;
	--cache) CACHE=${2:?}; shift 2 ;;
	--refresh) REFRESH=1; shift ;;       # force apt-get update of the package lists
	-h | --help) usage ;;
	*) die "unknown argument: $1 (see --help)" ;;
	esac
done
[[ -n $ARCH && -n $AGENT && -n $REGISTRY && -n $ENGINE && -n $OUT ]] || usage
case $ARCH in
amd64)
	KARCH=x86
	# Hardware crc32c for ext4's metadata checksums; fails with ENODEV (harmlessly) on CPUs
	# without SSE4.2, e.g. QEMU's default TCG CPU model.
	INITRD_MODULES+=(crc32c_intel)
	;;
arm64) KARCH=arm64 ;;
*) die "--arch must be amd64 or arm64, not $ARCH" ;;
esac
# The agent runs as /init before anything else exists, the registry and the engine from the
# root image: each must be an ELF for the guest's arch (and static; that is not checked here).
for bin in "$AGENT" "$REGISTRY" "$ENGINE/dockerd" "$ENGINE/docker-proxy"; do
	[[ -f $bin ]] || die "binary not found: $bin"
	case $(od -An -tx1 -N 4 "$bin" | tr -d ' ')/$(od -An -tu2 -j 18 -N 2 "$bin" | tr -d ' ') in
	7f454c46/62) [[ $ARCH == amd64 ]] || die "$bin is an amd64 binary, not $ARCH" ;;
	7f454c46/183) [[ $ARCH == arm64 ]] || die "$bin is an arm64 binary, not $ARCH" ;;
	*) die "$bin is not an amd64 or arm64 ELF binary" ;;
	esac
done
((EUID == 0)) || die "must run as root (image files need root ownership, /dev/console needs mknod)"

for tool in apt-get apt-cache dpkg-deb tar xargs flock mkfs.ext4 e2fsck debugfs depmod cpio gzip \
	sha256sum mknod od xz; do
	command -v "$tool" >/dev/null || die "missing tool $tool (apt-get install e2fsprogs kmod cpio xz-utils)"
done

CACHE=${CACHE:-$REPO_ROOT/_output/cache}
mkdir -p "$CACHE" "$OUT"
CACHE=$(cd "$CACHE" && pwd)
OUT=$(cd "$OUT" && pwd)
AGENT=$(cd "$(dirname "$AGENT")" && pwd)/$(basename "$AGENT")
REGISTRY=$(cd "$(dirname "$REGISTRY")" && pwd)/$(basename "$REGISTRY")
ENGINE=$(cd "$ENGINE" && pwd)
JOBS=$(nproc 2>/dev/null || echo 2)

APTDIR=$CACHE/apt-$SUITE-$ARCH # private apt state for this suite and arch: sources, lists, status, debs
DEBS=$APTDIR/debs
mkdir -p "$APTDIR/lists/partial" "$APTDIR/cache/archives/partial" "$DEBS"
touch "$APTDIR/status" # empty dpkg status: apt resolves as if installing into an empty root

# One build per arch and cache at a time (they share the apt state and the debs).
exec 9>"$APTDIR/.lock"
flock 9

# Scratch space lives in the cache (same filesystem, lots of room), inside $APTDIR so that
# the lock covers it: a killed run's leftovers are removed here, and a build of another
# suite or arch (another APTDIR, another lock) never touches it.
rm -rf "$APTDIR"/work.*
WORK=$(mktemp -d "$APTDIR/work.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

[[ -r $DEBIAN_KEYRING ]] || die "missing $DEBIAN_KEYRING (apt-get install debian-archive-keyring)"
# The suite's own sources list; the machine's sources (another suite, other vendors) are not used.
mkdir -p "$APTDIR/sources.list.d"
printf 'deb [signed-by=%s] %s %s main\n' \
	"$DEBIAN_KEYRING" "$DEBIAN_MIRROR" "$SUITE" \
	"$DEBIAN_KEYRING" "$DEBIAN_MIRROR" "$SUITE-updates" \
	"$DEBIAN_KEYRING" "$DEBIAN_SECURITY_MIRROR" "$SUITE-security" >"$APTDIR/sources.list.tmp"
# Other sources than the lists were fetched from: fetch them again.
cmp -s "$APTDIR/sources.list.tmp" "$APTDIR/sources.list" || REFRESH=1
mv -f "$APTDIR/sources.list.tmp" "$APTDIR/sources.list"

sha256() { sha256sum "$1" | cut -d' ' -f1; }

# ---------------------------------------------------------------------------- 1. packages

# apt with all state and the sources list under $APTDIR; the host's proxy settings apply.
# The host's sources, dpkg database, lists and archive cache are never read or written.
APT_OPTS=(
	-o "Dir::Etc::SourceList=$APTDIR/sources.list"
	-o "Dir::Etc::SourceParts=$APTDIR/sources.list.d"
	-o "Dir::State=$APTDIR"
	-o "Dir::State::Lists=$APTDIR/lists"
	-o "Dir::State::status=$APTDIR/status"
	-o "Dir::Cache=$APTDIR/cache"
	# No binary caches: 74 MB a arch for 0.4 s a call, and resolving is cached anyway.
	-o "Dir::Cache::pkgcache="
	-o "Dir::Cache::srcpkgcache="
	-o "APT::Architecture=$ARCH"
	-o "APT::Architectures::=$ARCH"
	# Only the Packages indices are needed: no translations, no AppStream metadata.
	-o "Acquire::Languages=none"
	-o "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false"
	# Our dirs are root's, so apt's _apt download sandbox could not write them.
	-o "APT::Sandbox::User=root"
	-q
)
apt_() { apt-get "${APT_OPTS[@]}" "$@"; }

apt_update() {
	local stamp=$APTDIR/lists/.updated
	if ((REFRESH)) || [[ ! -e $stamp ]] || [[ -n $(find "$stamp" -mmin +1440) ]]; then
		log "apt-get update ($ARCH)"
		if apt_ update >"$WORK/update.log" 2>&1; then
			touch "$stamp"
		elif [[ -e $stamp ]]; then
			log "warning: apt-get update failed, using the package lists from $(date -r "$stamp")"
			sed 's/^/    /' "$WORK/update.log" >&2
		else
			cat "$WORK/update.log" >&2
			die "apt-get update failed"
		fi
	fi
}

# resolve PKG... -> "name version" lines: what apt would install into an empty system.
resolve() {
	apt_ -s install --no-install-recommends "$@" >"$WORK/resolve.log" 2>&1 || {
		cat "$WORK/resolve.log" >&2
		die "cannot resolve packages: $*"
	}
	awk '$1 == "Inst" { v = $3; sub(/^\(/, "", v); print $2, v }' "$WORK/resolve.log" | LC_ALL=C sort
}

# The .deb apt-get download names for "name version": epoch ':' becomes %3a; arch or all.
deb_path() {
	local f
	for f in "$DEBS/${1}_${2//:/%3a}_$ARCH.deb" "$DEBS/${1}_${2//:/%3a}_all.deb"; do
		[[ -e $f ]] && { echo "$f"; return 0; }
	done
	return 1
}

# download LIST: fetch the debs of LIST ("name version" lines) that are not cached yet.
download() {
	local name ver missing=()
	while read -r name ver; do
		deb_path "$name" "$ver" >/dev/null || missing+=("$name=$ver")
	done <"$1"
	((${#missing[@]})) || return 0
	log "downloading ${#missing[@]} packages"
	mkdir -p "$WORK/dl"
	# Into a scratch dir first, so an interrupted download never leaves a truncated .deb.
	(cd "$WORK/dl" && apt_ download "${missing[@]}" >"$WORK/download.log" 2>&1) || {
		cat "$WORK/download.log" >&2
		die "apt-get download failed"
	}
	mv -f "$WORK/dl"/*.deb "$DEBS/"
	while read -r name ver; do
		deb_path "$name" "$ver" >/dev/null || die "apt-get download gave no .deb for $name $ver"
	done <"$1"
}

apt_update

SCRIPT_SHA=$(sha256 "$SCRIPT_PATH")

# Resolving takes apt a few seconds; the answer only changes with the package lists or this
# script (the package names), so it is kept under that key.
RESOLVED=$APTDIR/resolved-$( (echo "$SCRIPT_SHA"; cd "$APTDIR/lists" && stat -c '%n %s %Y' -- *Packages*) |
	sha256sum | cut -d' ' -f1)
if [[ -s $RESOLVED.root && -s $RESOLVED.kernel ]]; then
	cp "$RESOLVED.root" "$WORK/root.pkgs"
	cp "$RESOLVED.kernel" "$WORK/kernel.pkgs"
else
	resolve "${ROOT_PACKAGES[@]}" >"$WORK/root.pkgs"
	# The metapackage linux-image-<arch> points at the current ABI package
	# (linux-image-6.12.N+deb13-<arch>); only that one deb is used, not its initramfs-tools closure.
	resolve "linux-image-$ARCH" | awk '$1 ~ /^linux-image-[0-9]/' | head -n1 >"$WORK/kernel.pkgs"
	[[ -s $WORK/kernel.pkgs ]] || die "cannot resolve the kernel package behind linux-image-$ARCH"
	rm -f "$APTDIR"/resolved-*
	cp "$WORK/root.pkgs" "$RESOLVED.root.tmp" && mv "$RESOLVED.root.tmp" "$RESOLVED.root"
	cp "$WORK/kernel.pkgs" "$RESOLVED.kernel.tmp" && mv "$RESOLVED.kernel.tmp" "$RESOLVED.kernel"
fi
KPKG=$(<"$WORK/kernel.pkgs")
log "resolved $(wc -l <"$WORK/root.pkgs") root packages; kernel ${KPKG/ / }"

cat "$WORK/root.pkgs" "$WORK/kernel.pkgs" >"$WORK/all.pkgs"
download "$WORK/all.pkgs"

# Drop debs that are no longer part of the set (keeps a CI cache from growing forever).
declare -A KEEP=()
while read -r name ver; do KEEP[$(deb_path "$name" "$ver")]=1; done <"$WORK/root.pkgs"
read -r KNAME KVERSION <"$WORK/kernel.pkgs"
KDEB=$(deb_path "$KNAME" "$KVERSION")
KEEP[$KDEB]=1
for f in "$DEBS"/*.deb; do [[ -n ${KEEP[$f]:-} ]] || rm -f "$f"; done

# ---------------------------------------------------------------------------- cache keys

AGENT_SHA=$(sha256 "$AGENT")
REGISTRY_SHA=$(sha256 "$REGISTRY")
ENGINE_SHA=$(cat "$ENGINE/dockerd" "$ENGINE/docker-proxy" | sha256sum | cut -d' ' -f1)
ROOT_KEY=$(cat "$WORK/root.pkgs" "$WORK/kernel.pkgs" <(echo "$SCRIPT_SHA $REGISTRY_SHA $ENGINE_SHA") | sha256sum | cut -d' ' -f1)
KERNEL_KEY=$(cat "$WORK/kernel.pkgs" <(echo "$SCRIPT_SHA") | sha256sum | cut -d' ' -f1)
INITRD_KEY=$(cat "$WORK/kernel.pkgs" <(echo "$SCRIPT_SHA $AGENT_SHA") | sha256sum | cut -d' ' -f1)

# A stamp holds the key an artifact was built from and the artifact's sha256 (so the manifest
# need not hash a 350 MB root.img again when only the initrd changed).
fresh() { # fresh ARTIFACT KEY: the artifact exists and was built from KEY
	[[ -e $OUT/$1 && -e $OUT/.$1.stamp && $(head -n1 "$OUT/.$1.stamp") == "$2" ]]
}
# publish TMPFILE ARTIFACT KEY: atomic rename into place, then record its key.
publish() {
	printf '%s\n%s\n' "$3" "$(sha256 "$1")" >"$OUT/.$2.tmp.stamp"
	mv -f "$1" "$OUT/$2"
	mv -f "$OUT/.$2.tmp.stamp" "$OUT/.$2.stamp"
}

NEED_KERNEL=0 NEED_ROOT=0 NEED_INITRD=0
{ fresh vmlinuz "$KERNEL_KEY" && [[ -s $OUT/.kver ]]; } || NEED_KERNEL=1
fresh root.img "$ROOT_KEY" || NEED_ROOT=1
fresh initrd.img "$INITRD_KEY" || NEED_INITRD=1

# ---------------------------------------------------------------------------- 2. kernel

# The kernel deb (~60 MB of xz, ~7 s to unpack) is unpacked once per kernel into the cache,
# keeping only what the image uses: vmlinuz, the root.img module subset, and the metadata
# including the full modules.dep. A new agent then rebuilds the initrd in a second or two.
K=$APTDIR/kernel-$KERNEL_KEY
if ((NEED_KERNEL + NEED_ROOT + NEED_INITRD)) && [[ ! -e $K/.complete ]]; then
	log "unpacking $(basename "$KDEB")"
	kfull=$WORK/kernel-full
	mkdir -p "$kfull"
	# Only the kernel and its modules; the deb also carries System.map, config and (arm64) dtbs.
	# Trixie's kernel ships its modules under /usr/lib/modules (merged /usr).
	dpkg-deb --fsys-tarfile "$KDEB" | tar -C "$kfull" -xf - --wildcards './boot/vmlinuz-*' './usr/lib/modules/*'
	ln -s usr/lib "$kfull/lib" # where the build machine's depmod looks
	KVER=$(basename "$(echo "$kfull"/usr/lib/modules/*)")
	[[ -f $kfull/boot/vmlinuz-$KVER ]] || die "kernel deb has no /boot/vmlinuz-$KVER"
	# Debian's 6.12 kernels ship xz-compressed modules (.ko.xz). The agent loads modules with a
	# plain finit_module, so the kept ones are decompressed here; any other compression fails.
	if [[ -n $(find "$kfull/usr/lib/modules/$KVER" -name '*.ko.*' ! -name '*.ko.xz' -print -quit) ]]; then
		die "kernel $KVER ships modules compressed other than with xz; teach build.sh to decompress them"
	fi
	# The deb carries no modules.dep (its postinst runs depmod).
	depmod -b "$kfull" "$KVER"
	(
		cd "$kfull/usr/lib/modules/$KVER"
		# From here on every name is the uncompressed .ko one (what the image ships).
		sed -i 's/\.ko\.xz\>/.ko/g' modules.dep modules.order
		# Expand the globs to module files, then keep a module only if every module it needs
		# (modules.dep lists the whole transitive set) is kept too.
		root_module_globs "$KARCH" | while read -r g; do
			for p in $g $g.xz; do if [[ -e $p ]]; then find "$p" \( -name '*.ko' -o -name '*.ko.xz' \); fi; done
		done | sed 's/\.xz$//' | grep -Ev "$ROOT_MODULE_EXCLUDE" | LC_ALL=C sort -u >"$WORK/root.mods.wanted"
		awk -F': *' 'NR == FNR { want[$1] = 1; next }
			($1 in want) { ok = 1; n = split($2, d, " "); for (i = 1; i <= n; i++) if (!(d[i] in want)) ok = 0
				if (ok) print $1; else print $1 > "/dev/stderr" }' \
			"$WORK/root.mods.wanted" modules.dep >root.mods 2>"$WORK/root.mods.dropped"
		# Decompress the kept modules in parallel (xz keeps nothing but the .ko).
		while read -r m; do [[ -e $m ]] || echo "$m.xz"; done <root.mods |
			xargs -r -d '\n' -n 32 -P "$JOBS" xz -d
		while read -r m; do [[ -f $m ]] || die "module $m missing after decompression"; done <root.mods
	)
	if [[ -s $WORK/root.mods.dropped ]]; then
		log "left out (dependencies not kept): $(sed 's|.*/||; s|\.ko$||' "$WORK/root.mods.dropped" | tr '\n' ' ')"
	fi
	rm -rf "$APTDIR"/kernel-*
	mkdir -p "$K.tmp/boot" "$K.tmp/lib/modules/$KVER"
	mv "$kfull/boot/vmlinuz-$KVER" "$K.tmp/boot/"
	(cd "$kfull/usr/lib/modules/$KVER" &&
		tar -cf - -T root.mods root.mods modules.dep modules.order modules.builtin modules.builtin.modinfo) |
		tar -C "$K.tmp/lib/modules/$KVER" -xf -
	touch "$K.tmp/.complete"
	mv "$K.tmp" "$K"
	rm -rf "$kfull"
fi
if [[ -e $K/.complete ]]; then
	KVER=$(basename "$(echo "$K"/lib/modules/*)")
	KMOD=$K/lib/modules/$KVER
else
	KVER=$(<"$OUT/.kver") # everything is fresh; the kernel cache may have been pruned
fi

if ((NEED_KERNEL)); then
	kimg=$K/boot/vmlinuz-$KVER
	case $ARCH in
	amd64)
		# bzImage: "HdrS" at 0x202.
		[[ $(od -An -c -j 514 -N 4 "$kimg" | tr -d ' ') == HdrS ]] || die "$kimg is not a bzImage"
		;;
	arm64)
		# Virtualization.framework boots only an uncompressed arm64 Image ("ARM\x64" magic at
		# 56). Debian's arm64 vmlinuz is one; older/other kernels were gzip'd Images.
		if [[ $(od -An -tx1 -N 2 "$kimg" | tr -d ' ') == 1f8b ]]; then
			gzip -dc "$kimg" >"$WORK/Image"
			kimg=$WORK/Image
		fi
		[[ $(od -An -tx1 -j 56 -N 4 "$kimg" | tr -d ' ') == 41524d64 ]] ||
			die "$kimg is not an uncompressed arm64 Image"
		;;
	esac
	cp "$kimg" "$OUT/.vmlinuz.tmp"
	echo "$KVER" >"$OUT/.kver"
	publish "$OUT/.vmlinuz.tmp" vmlinuz "$KERNEL_KEY"
	log "vmlinuz: $KVER"
fi

# ---------------------------------------------------------------------------- 3. root.img

# fixup_rootfs DIR: the parts of the maintainer scripts (and of debootstrap) the guest needs.
fixup_rootfs() {
	local r=$1 f

	# Users and groups: base-passwd's postinst copies its masters into place. The "docker"
	# group, as Debian's docker.io postinst adds it (dockerd chowns its socket to it).
	install -m 0644 "$r/usr/share/base-passwd/passwd.master" "$r/etc/passwd"
	install -m 0644 "$r/usr/share/base-passwd/group.master" "$r/etc/group"
	grep -q '^docker:' "$r/etc/group" || echo 'docker:x:999:' >>"$r/etc/group"
	printf 'root:*::0:99999:7:::\n' >"$r/etc/shadow"
	chown 0:42 "$r/etc/shadow" # group shadow
	chmod 0640 "$r/etc/shadow"

	# iptables' postinst registers alternatives (nft preferred). update-alternatives never ran,
	# and the root is read-only, so the choice is fixed here: nft, as Debian's default.
	for f in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do
		ln -sfn xtables-nft-multi "$r/usr/sbin/$f"
	done

	# containerd's only client is dockerd. Plugins that cannot work here or that nothing
	# uses are off: each costs start-up time under emulation (aufs alone runs modprobe) and
	# memory. The CRI plugin (Kubernetes' API; kind and k3d bring their own containerd),
	# the snapshotters for other filesystems, tracing and NRI. overlayfs and native stay:
	# dockerd's containerd image store uses them.
	cat >"$r/etc/containerd/config.toml" <<-'EOF'
		# berth: written by installer/image/build.sh
		version = 2
		disabled_plugins = [
		  "io.containerd.grpc.v1.cri",
		  "io.containerd.snapshotter.v1.aufs",
		  "io.containerd.snapshotter.v1.btrfs",
		  "io.containerd.snapshotter.v1.zfs",
		  "io.containerd.snapshotter.v1.devmapper",
		  "io.containerd.snapshotter.v1.blockfile",
		  "io.containerd.tracing.processor.v1.otlp",
		  "io.containerd.internal.v1.tracing",
		  "io.containerd.nri.v1.nri",
		]

		[plugins."io.containerd.internal.v1.opt"]
		  path = "/var/lib/containerd/opt"
	EOF

	# /bin/sh is dash's, set up by its maintainer scripts, and dash is not in the closure:
	# bash stands in, so `sh -c` (berth shell, scripts) works.
	[ -e "$r/usr/bin/sh" ] || ln -sfn bash "$r/usr/bin/sh"

	# Directories the guest mounts over or writes into (the agent mounts tmpfs/data disk there).
	mkdir -p "$r"/{proc,sys,dev,run,tmp,mnt,root,etc/docker,var/lib/docker,var/lib/containerd,var/tmp}
	chmod 1777 "$r/tmp" "$r/var/tmp"
	chmod 0700 "$r/root"
	# /var/run and /var/lock as in any Debian system (base-files ships them as directories).
	rm -rf "$r/var/run" "$r/var/lock"
	ln -s ../run "$r/var/run"
	ln -s ../run/lock "$r/var/lock"

	echo berth >"$r/etc/hostname"
	cat >"$r/etc/hosts" <<-'EOF'
		127.0.0.1	localhost
		127.0.1.1	berth
		::1		localhost ip6-localhost ip6-loopback
		ff02::1		ip6-allnodes
		ff02::2		ip6-allrouters
	EOF
	cat >"$r/etc/nsswitch.conf" <<-'EOF'
		passwd:         files
		group:          files
		shadow:         files
		hosts:          files dns
		networks:       files
		protocols:      files
		services:       files
		ethers:         files
		rpc:            files
	EOF
	# The root is read-only: the agent writes /run/resolv.conf from the DHCP/host DNS answer.
	ln -sfn ../run/resolv.conf "$r/etc/resolv.conf"
	ln -sfn ../proc/self/mounts "$r/etc/mtab"
	: >"$r/etc/fstab"

	# ca-certificates' postinst (update-ca-certificates) builds the bundle that Go programs
	# (dockerd, containerd) read: /etc/ssl/certs/ca-certificates.crt. No per-hash links.
	mkdir -p "$r/etc/ssl/certs"
	(cd "$r/usr/share/ca-certificates" && find . -name '*.crt' | LC_ALL=C sort | sed 's|^\./||') \
		>"$r/etc/ca-certificates.conf"
	(cd "$r/usr/share/ca-certificates" && xargs -d '\n' cat) <"$r/etc/ca-certificates.conf" \
		>"$r/etc/ssl/certs/ca-certificates.crt"

	for f in "${PRUNE_FILES[@]}"; do rm -f "${r:?}/$f"; done

	# Documentation is dead weight in a VM image; copyright files stay (license terms).
	find "$r/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
	rm -rf "$r"/usr/share/{man,info,locale,lintian,bash-completion,zsh}

	# libc-bin's trigger runs ldconfig. The host's ldconfig can build the cache only for its
	# own arch; for a foreign arch the guest's ld.so falls back to its built-in search path,
	# which on Debian includes /lib/<triplet> and /usr/lib/<triplet> (all our libraries).
	rm -f "$r/etc/ld.so.cache"
	if [[ $(dpkg --print-architecture) == "$ARCH" ]]; then
		ldconfig -r "$r"
	fi
}

if ((NEED_ROOT)); then
	R=$WORK/rootfs
	log "unpacking $(wc -l <"$WORK/root.pkgs") packages into the root filesystem"
	# Merged /usr as debootstrap makes it (a few packages may still ship /bin, /lib, ...):
	# the links exist before unpacking and tar --keep-directory-symlink follows them.
	mkdir -p "$R/usr/bin" "$R/usr/sbin" "$R/usr/lib"
	ln -s usr/bin "$R/bin"
	ln -s usr/sbin "$R/sbin"
	ln -s usr/lib "$R/lib"
	if [[ $ARCH == amd64 ]]; then
		mkdir -p "$R/usr/lib64"
		ln -s usr/lib64 "$R/lib64"
	fi
	while read -r name ver; do deb_path "$name" "$ver"; done <"$WORK/root.pkgs" >"$WORK/root.debs"
	# Packages own disjoint files, so they unpack in parallel (xz decompression is the cost).
	# shellcheck disable=SC2016 # $0 and $d expand in the inner bash
	xargs -d '\n' -n 4 -P "$JOBS" bash -c 'set -eo pipefail
		for d; do dpkg-deb --fsys-tarfile "$d" | tar -C "$0" --keep-directory-symlink --numeric-owner -xf -; done' \
		"$R" <"$WORK/root.debs"
	for l in bin sbin lib; do [[ -L $R/$l ]] || die "a package replaced the /$l symlink"; done

	fixup_rootfs "$R"
	install -D -m 0755 "$REGISTRY" "$R/usr/libexec/berth/registry"
	# The engine where Debian's docker.io puts it; docker-init is tini's static build, as there.
	install -D -m 0755 "$ENGINE/dockerd" "$R/usr/sbin/dockerd"
	install -D -m 0755 "$ENGINE/docker-proxy" "$R/usr/sbin/docker-proxy"
	ln -sfn tini-static "$R/usr/bin/docker-init"

	# Kernel modules (the subset chosen above) with a depmod index, so modprobe works in the
	# guest (dockerd and iptables load netfilter, bridge, overlay, ... on demand).
	km=$R/usr/lib/modules/$KVER
	mkdir -p "$km"
	(cd "$KMOD" && tar -cf - -T root.mods modules.builtin modules.builtin.modinfo) | tar -C "$km" -xf -
	grep -Fxf "$KMOD/root.mods" "$KMOD/modules.order" >"$km/modules.order" || true
	depmod -b "$R" "$KVER"

	if [[ $(dpkg --print-architecture) == "$ARCH" ]]; then
		# Proves the engine runs inside the image.
		chroot "$R" /usr/sbin/dockerd --version >&2 || die "dockerd does not run in the image"
	fi

	# Size: content + 15%, plus room for the inode tables (256 bytes each, 20% spare inodes).
	used_kb=$(du -sk "$R" | cut -f1)
	inodes=$(find "$R" | wc -l)
	inodes=$((inodes + inodes / 5 + 1024))
	size_mb=$(((used_kb * 115 / 100 + inodes / 4 + 8192 + 1023) / 1024))
	for try in 1 2 3; do
		log "mkfs.ext4: ${used_kb} KiB of files, $inodes inodes, ${size_mb} MiB image"
		rm -f "$OUT/.root.img.tmp"
		# Read-only image: no journal, no reserved blocks.
		mkfs.ext4 -q -F -L berth-root -O ^has_journal -m 0 -N "$inodes" -b 4096 -E root_owner=0:0 \
			-d "$R" "$OUT/.root.img.tmp" "${size_mb}M" >"$WORK/mkfs.log" 2>&1 && break
		cat "$WORK/mkfs.log" >&2
		((try < 3)) || die "mkfs.ext4 failed"
		size_mb=$((size_mb * 5 / 4)) # the estimate was short: grow and retry
	done
	e2fsck -fn "$OUT/.root.img.tmp" >"$WORK/fsck.log" 2>&1 || {
		cat "$WORK/fsck.log" >&2
		die "e2fsck found problems in root.img"
	}
	debugfs -R 'stat /usr/sbin/dockerd' "$OUT/.root.img.tmp" 2>/dev/null | grep -q 'Type: regular' ||
		die "root.img has no /usr/sbin/dockerd"
	# The point release (/etc/debian_version, "13.2") for the manifest.
	cp "$R/etc/debian_version" "$OUT/.debian_version"
	publish "$OUT/.root.img.tmp" root.img "$ROOT_KEY"
	log "root.img: $(du -h --apparent-size "$OUT/root.img" | cut -f1) ($(du -h "$OUT/root.img" | cut -f1) on disk)"
fi

# ---------------------------------------------------------------------------- 4. initrd.img

# modules_in_order DIR NAME...: the .ko paths (relative to DIR) of NAMEs and of everything they
# need, each after its dependencies: the order to load them in. Built-in names are skipped; a
# name that is neither fails the build (catches renames in a new kernel).
modules_in_order() {
	local dir=$1
	shift
	awk -v names="$*" '
		function modname(p) { sub(/.*\//, "", p); sub(/\.ko$/, "", p); gsub(/-/, "_", p); return p }
		function visit(p,   d, n, i) {
			if (p in seen) return
			seen[p] = 1
			n = split(deps[p], d, " ")
			for (i = 1; i <= n; i++) visit(d[i])
			print p
		}
		FILENAME ~ /modules\.builtin$/ { builtin[modname($0)] = 1; next }
		{ p = $1; sub(/:$/, "", p); path[modname(p)] = p; d = $0; sub(/^[^:]*: */, "", d); deps[p] = d }
		END {
			n = split(names, want, " ")
			for (i = 1; i <= n; i++) {
				if (want[i] in path) visit(path[want[i]])
				else if (!(want[i] in builtin)) { print "unknown module " want[i] > "/dev/stderr"; exit 1 }
			}
		}' "$dir/modules.builtin" "$dir/modules.dep"
}

if ((NEED_INITRD)); then
	I=$WORK/initrd
	modules_in_order "$KMOD" "${INITRD_MODULES[@]}" >"$WORK/initrd.mods" ||
		die "initrd module list does not match kernel $KVER"
	mkdir -p "$I"/{dev,proc,sys,run,tmp,mnt,etc/berth,lib/modules/"$KVER"}
	install -m 0755 "$AGENT" "$I/init"
	mknod -m 0600 "$I/dev/console" c 5 1 # the kernel opens it for init's stdio, before devtmpfs
	(cd "$KMOD" && tar -cf - -T "$WORK/initrd.mods" modules.builtin modules.builtin.modinfo) |
		tar -C "$I/lib/modules/$KVER" -xf -
	grep -Fxf "$WORK/initrd.mods" "$KMOD/modules.order" >"$I/lib/modules/$KVER/modules.order" || true
	depmod -b "$I" "$KVER"
	# The agent's boot list: module names (as in /proc/modules, '-' -> '_') in load order;
	# modules.dep next to the modules maps each name to its file.
	sed 's|.*/||; s|\.ko$||; s|-|_|g' "$WORK/initrd.mods" >"$I/etc/berth/modules"
	# Reproducible archive: fixed mtimes, sorted names, root ownership.
	find "$I" -exec touch -h -d @0 {} +
	(cd "$I" && find . -mindepth 1 | LC_ALL=C sort |
		cpio --quiet -o -H newc -R 0:0 --reproducible) | gzip -9n >"$OUT/.initrd.img.tmp"
	publish "$OUT/.initrd.img.tmp" initrd.img "$INITRD_KEY"
	log "initrd.img: $(du -h "$OUT/initrd.img" | cut -f1), $(wc -l <"$I/etc/berth/modules") modules"
fi

# ---------------------------------------------------------------------------- 5. manifest.json

MANIFEST_KEY=$(echo "$KERNEL_KEY $ROOT_KEY $INITRD_KEY" | sha256sum | cut -d' ' -f1)
if ! fresh manifest.json "$MANIFEST_KEY"; then
	artifact() {
		local sum
		sum=$(sed -n 2p "$OUT/.$1.stamp")
		[[ -n $sum ]] || sum=$(sha256 "$OUT/$1")
		printf '    "%s": {"sha256": "%s", "size": %d}' "$1" "$sum" "$(stat -c %s "$OUT/$1")"
	}
	{
		printf '{\n'
		printf '  "arch": "%s",\n' "$ARCH"
		printf '  "kernelVersion": "%s",\n' "$KVER"
		printf '  "debianSuite": "%s",\n' "$SUITE"
		printf '  "debianRelease": "%s",\n' "$(cat "$OUT/.debian_version" 2>/dev/null)"
		# The versions that matter at a glance (docs/image.md): the guest kernel (uname -r), the
		# engine's release and module, and the Debian package versions of what it runs;
		# "packages" below has all of them.
		printf '  "versions": {\n'
		printf '    "kernel": "%s",\n' "$KVER"
		printf '    "linux-image": "%s"' "$KVERSION"
		printf ',\n    "docker": "%s"' "$ENGINE_RELEASE"
		printf ',\n    "docker-module": "%s"' "$ENGINE_VERSION"
		for p in docker-cli containerd runc tini nftables iptables; do
			v=$(awk -v p="$p" '$1 == p { print $2 }' "$WORK/root.pkgs")
			[[ -n $v ]] || die "$p is not in the root packages"
			printf ',\n    "%s": "%s"' "$p" "$v"
		done
		printf ',\n    "registry": "%s"' "$REGISTRY_VERSION"
		printf '\n  },\n'
		printf '  "packages": {\n'
		cat "$WORK/root.pkgs" "$WORK/kernel.pkgs" | LC_ALL=C sort |
			awk '{ printf "%s    \"%s\": \"%s\"", (NR > 1 ? ",\n" : ""), $1, $2 } END { print "" }'
		printf '  },\n'
		printf '  "artifacts": {\n'
		artifact vmlinuz && printf ',\n'
		artifact initrd.img && printf ',\n'
		artifact root.img && printf '\n'
		printf '  },\n'
		printf '  "agentSha256": "%s",\n' "$AGENT_SHA"
		printf '  "builtAt": "%s"\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
		printf '}\n'
	} >"$OUT/.manifest.json.tmp"
	publish "$OUT/.manifest.json.tmp" manifest.json "$MANIFEST_KEY"
fi

log "done: $OUT (kernel $KVER)"
