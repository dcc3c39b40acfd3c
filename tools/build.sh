#!/usr/bin/env bash
# Build the docker toolchain berth ships: the docker-compose and docker-buildx CLI plugins and
# the docker CLI, from the Go module proxy at the versions pinned in tools/versions.env; and,
# with --only registry, the guest's registry (DIR/berth-registry); with --only engine, the
# guest's Docker Engine (DIR/engine/dockerd and DIR/engine/docker-proxy).
#
#   tools/build.sh --out DIR [--goos OS] [--goarch ARCH] [--only "compose buildx docker registry"]
#
# Writes DIR/cli-plugins/docker-compose, DIR/cli-plugins/docker-buildx and DIR/docker (with
# .exe on windows), static (CGO_ENABLED=0), each stamped with its release version the way
# its own project's build does it, so `docker compose version`, `docker buildx version` and
# `docker version` print the release. A binary newer than versions.env, its module's go.mod
# and go.sum and this script is kept as it is: a second run is instant.
#
# The binaries are built once per platform into a shared cache, $BERTH_TOOLCHAIN_CACHE
# (default _output/toolchain/<os>-<arch>), under a lock where flock(1) exists, and copied to
# DIR: builds into several output directories (make build OUT=..., make cross, make deb)
# compile each tool once, even when they run at the same time.
#
# Each tool is its own module (tools/compose, tools/buildx, tools/dockercli) so each builds
# with exactly the dependency versions of its release; their go.mod must require the version
# versions.env pins (checked here).
set -Eeuo pipefail
trap 'echo "tools/build.sh: line $LINENO: \"$BASH_COMMAND\" failed" >&2' ERR

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
GO=${GO:-go}
usage() { sed -n '6p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }
out= goos=$($GO env GOOS) goarch=$($GO env GOARCH) only="compose buildx docker"
while [ $# -gt 0 ]; do
	case $1 in
	--out) out=${2:?}; shift 2 ;;
	--goos) goos=${2:?}; shift 2 ;;
	--goarch) goarch=${2:?}; shift 2 ;;
	--only) only=${2:?}; shift 2 ;;
	*) usage ;;
	esac
done
[ -n "$out" ] || usage
# shellcheck source=versions.env
. "$here/versions.env"
ext=
[ "$goos" = windows ] && ext=.exe
mkdir -p "$out"
out=$(cd "$out" && pwd)
cache=${BERTH_TOOLCHAIN_CACHE:-$here/../_output/toolchain}/$goos-$goarch
mkdir -p "$cache"
if command -v flock >/dev/null 2>&1; then
	exec 9>"$cache/.lock"
	flock 9
fi

# fresh FILE DIR: FILE exists and is newer than the pins, the module and this script.
fresh() {
	local f
	for f in "$here/versions.env" "$2/go.mod" "$2/go.sum" "$2"/*.go "${BASH_SOURCE[0]}"; do
		[ -f "$1" ] && [ "$1" -nt "$f" ] || return 1
	done
}

# build NAME DIR MODULE VERSION PACKAGE OUTPUT(relative) LDFLAGS [GCFLAGS [TAGS]]
build() {
	local name=$1 dir=$here/$2 mod=$3 ver=$4 pkg=$5 rel=$6 ldflags=$7 gcflags=${8:-} tags=${9:-} have
	local dst=$out/$rel built=$cache/$rel
	mkdir -p "$(dirname "$dst")" "$(dirname "$built")"
	if fresh "$dst" "$dir"; then
		echo "  unchanged  $dst ($name $ver)"
		return
	fi
	if fresh "$built" "$dir"; then
		cp -p "$built" "$dst.tmp"
		mv -f "$dst.tmp" "$dst"
		echo "  copied     $dst ($name $ver, $goos/$goarch, from $built)"
		return
	fi
	have=$(cd "$dir" && $GO list -m -f '{{.Version}}' "$mod")
	if [ "$have" != "$ver" ]; then
		echo "tools/build.sh: tools/$2/go.mod requires $mod $have but tools/versions.env pins $ver: update the module (docs/install.md, \"Updating the docker toolchain\")" >&2
		exit 1
	fi
	local t0=$SECONDS
	# -trimpath and no VCS stamp: the same sources give the same binary.
	(cd "$dir" && CGO_ENABLED=0 GOOS=$goos GOARCH=$goarch GOFLAGS=-mod=readonly \
		$GO build -trimpath -buildvcs=false -ldflags "-s -w $ldflags" ${gcflags:+-gcflags "$gcflags"} ${tags:+-tags "$tags"} -o "$built.tmp" "$pkg")
	mv -f "$built.tmp" "$built"
	cp -p "$built" "$dst.tmp"
	mv -f "$dst.tmp" "$dst"
	echo "  built      $dst ($name $ver, $goos/$goarch, $((SECONDS - t0)) s)"
}

for t in $only; do
	case $t in
	compose)
		build docker-compose compose "$COMPOSE_MODULE" "$COMPOSE_VERSION" "$COMPOSE_MODULE/cmd" \
			"cli-plugins/docker-compose$ext" "-X $COMPOSE_MODULE/internal.Version=$COMPOSE_VERSION" ;;
	buildx)
		build docker-buildx buildx "$BUILDX_MODULE" "$BUILDX_VERSION" "$BUILDX_MODULE/cmd/buildx" \
			"cli-plugins/docker-buildx$ext" \
			"-X $BUILDX_MODULE/version.Version=$BUILDX_VERSION -X $BUILDX_MODULE/version.Package=$BUILDX_MODULE" ;;
	docker)
		# The CLI's own scripts/build/.variables: Version is the CalVer without the "v".
		v=${DOCKER_CLI_VERSION#v}
		v=${v%+incompatible}
		# docker/cli has no go.mod, so Go compiles it as go1.16 code; its own build writes a
		# go.mod from vendor.mod first (scripts/with-go-mod.sh). The same language version,
		# vendor.mod's "go" line, given to the compiler for its packages instead:
		build docker dockercli "$DOCKER_CLI_MODULE" "$DOCKER_CLI_VERSION" "$DOCKER_CLI_MODULE/cmd/docker" \
			"docker$ext" "-X $DOCKER_CLI_MODULE/cli/version.Version=$v" "$DOCKER_CLI_MODULE/...=-lang=$DOCKER_CLI_GO" ;;
	registry)
		# The guest's registry (tools/registry, a main package of berth's around the
		# distribution library), put into the guest image by installer/image/build.sh.
		build berth-registry registry "$REGISTRY_MODULE" "$REGISTRY_VERSION" . \
			"berth-registry$ext" "-X main.version=$REGISTRY_VERSION" ;;
	engine)
		# The guest's Docker Engine: dockerd and docker-proxy of the moby release that
		# versions.env pins, static, with the tags and version stamp of moby's own static
		# build (hack/make.sh, hack/make/.go-autogen); installer/image/build.sh puts them
		# into the guest image.
		for b in dockerd docker-proxy; do
			build "$b" engine "$ENGINE_MODULE" "$ENGINE_VERSION" "$ENGINE_MODULE/cmd/$b" "engine/$b$ext" \
				"-X $ENGINE_MODULE/dockerversion.Version=$ENGINE_RELEASE -X $ENGINE_MODULE/dockerversion.GitCommit=$ENGINE_VERSION" \
				"" "netgo osusergo static_build nri_no_wasm"
		done ;;
	*) echo "tools/build.sh: --only $t: want compose, buildx, docker, registry or engine" >&2; exit 2 ;;
	esac
done
