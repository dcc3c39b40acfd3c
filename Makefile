# berth — build, test and run. `make help` lists the targets.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

GO          ?= go
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
OUT         := _output
BIN         := $(OUT)/bin
IMAGE_OUT   := $(OUT)/image
HOST_ARCH   := $(shell $(GO) env GOARCH)
# Every guest architecture is built; Apple Silicon Macs boot the arm64 one.
IMAGE_ARCHES ?= amd64 arm64
BERTH_HOME  ?= $(HOME)/.berth
# berth refuses to run as root unless told (docs/security.md); CI and the build machines
# run make as root, where root is the only user.
export BERTH_ALLOW_ROOT ?= 1
LDFLAGS     := -s -w -X main.version=$(VERSION) -X github.com/berth-dev/berth/guestagent.Version=$(VERSION)
# The sha256 of each guest image bundle of this version (`make bundle` before the build),
# baked into berth so a downloaded bundle is checked against the build, never against a
# checksum from the server that serves it: "amd64=HEX,arm64=HEX"; empty without bundles.
BUNDLE_SHA256 := $(shell for a in $(IMAGE_ARCHES); do f="$(OUT)/bundle/berth-image-$(VERSION)-$$a.tar.gz.sha256"; if [ -f "$$f" ]; then echo "$$a=$$(cut -d' ' -f1 "$$f")"; fi; done | paste -sd, -)
LDFLAGS     += $(if $(BUNDLE_SHA256),-X github.com/berth-dev/berth/host/image.BundleSHA256=$(BUNDLE_SHA256))
E2E_TIMEOUT ?= 75m

# Debian packages the build and the tests need (installed by `make deps` when missing).
DEB_PACKAGES := qemu-system-x86 qemu-system-arm qemu-utils e2fsprogs cpio kmod busybox-static iproute2 curl \
                dpkg-dev zstd xz-utils debian-archive-keyring osslsigncode openssl wixl msitools \
                gcc libgl1-mesa-dev xorg-dev xvfb dbus-daemon xclip xterm gcc-mingw-w64-x86-64

.PHONY: help deps build toolchain cross-berth cross-toolchain test-cross agents tray image install-image run test test-unit test-e2e soak bench lint fuzz cross typecheck-darwin sign-darwin install uninstall bundle deb msi app-darwin wsl-rootfs clean

help: ## show this help
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

deps: ## install the Debian packages and Go modules the build needs (as root)
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then echo "missing packages: $$missing — run: sudo apt-get install $$missing" >&2; exit 1; fi; \
	  echo "installing: $$missing"; \
	  apt-get update -q >/dev/null; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing >/dev/null; \
	fi
	$(GO) mod download

build: ## build berth for this machine and berth-agent for every guest architecture
	@mkdir -p $(BIN)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/berth ./cmd/berth
	@$(MAKE) --no-print-directory agents
	@$(MAKE) --no-print-directory tray
	@$(MAKE) --no-print-directory toolchain

# The docker toolchain berth ships: the docker-compose and docker-buildx CLI plugins and the
# docker CLI, built from the Go module proxy at the versions in tools/versions.env (the one
# place they are pinned). A binary newer than its pins is kept, so a second build is instant.
toolchain: ## build docker compose and buildx ($(BIN)/cli-plugins) and the docker CLI ($(BIN)/docker) at the pinned releases
	GO=$(GO) tools/build.sh --out $(BIN)

tray: ## build berth-tray (cgo, fyne; needs libgl1-mesa-dev xorg-dev)
	CGO_ENABLED=1 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/berth-tray ./cmd/berth-tray

# The guest side: berth-agent, the registry (tools/registry) and the Docker Engine
# (tools/engine: dockerd, docker-proxy), pinned in tools/versions.env, for every guest
# architecture.
agents:
	@for a in $(IMAGE_ARCHES); do \
	  mkdir -p $(BIN)/linux_$$a; \
	  CGO_ENABLED=0 GOOS=linux GOARCH=$$a $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/linux_$$a/berth-agent ./cmd/berth-agent || exit 1; \
	  GO=$(GO) tools/build.sh --out $(BIN)/linux_$$a --goos linux --goarch $$a --only "registry engine" || exit 1; \
	done

image: deps agents ## build (or reuse) the guest images under _output/image/<arch>
	@for a in $(IMAGE_ARCHES); do \
	  installer/image/build.sh --arch $$a --agent $(BIN)/linux_$$a/berth-agent --registry $(BIN)/linux_$$a/berth-registry --engine $(BIN)/linux_$$a/engine --out $(IMAGE_OUT)/$$a || exit 1; \
	done

wsl-rootfs: image ## the root tarball the Windows (WSL2) driver imports: _output/image/<arch>/rootfs.tar
	@for a in $(IMAGE_ARCHES); do \
	  installer/image/wsl-rootfs.sh --image $(IMAGE_OUT)/$$a --agent $(BIN)/linux_$$a/berth-agent --out $(IMAGE_OUT)/$$a/rootfs.tar; \
	done

install-image: image ## copy the guest images to ~/.berth/_images
	@for a in $(IMAGE_ARCHES); do \
	  mkdir -p $(BERTH_HOME)/_images/$$a; \
	  cp -u $(IMAGE_OUT)/$$a/* $(BERTH_HOME)/_images/$$a/; \
	done

run: deps build install-image ## build everything and start the default instance
	$(BIN)/berth start
	@[ "$$(id -u)" != 0 ] || echo "You are root: berth refuses root unless BERTH_ALLOW_ROOT=1 (make sets it). Run \`export BERTH_ALLOW_ROOT=1\` before using berth in this shell, or use berth as your own user."

test: ## all tests: unit, cross-builds, darwin type-check, and the end-to-end suite (boots VMs)
	@$(MAKE) --no-print-directory deps
	@$(MAKE) --no-print-directory lint
	@$(MAKE) --no-print-directory test-unit
	@$(MAKE) --no-print-directory fuzz FUZZTIME=$(TEST_FUZZTIME)
	@$(MAKE) --no-print-directory test-cross
	@$(MAKE) --no-print-directory typecheck-darwin
	@$(MAKE) --no-print-directory test-e2e

test-unit: ## go vet and the unit tests (no VM)
	$(GO) vet ./...
	$(GO) test -count=1 ./...

test-e2e: deps build image ## end-to-end suite: real VMs, the real docker CLI, the tray under Xvfb
	BERTH_BIN=$(abspath $(BIN)/berth) BERTH_IMAGES=$(abspath $(IMAGE_OUT)) \
	  BERTH_TRAY_BIN=$(abspath $(BIN)/berth-tray) BERTH_ARTIFACTS=$(abspath $(OUT)/artifacts) \
	  test/run-e2e.sh $(GO) test -tags e2e -count=1 -v -timeout $(E2E_TIMEOUT) ./test/e2e/
	@echo "tray screenshot: $(abspath $(OUT)/artifacts)/tray-containers.png"

soak: deps build image ## the long checks (200 streams killed mid-stream, 2 GiB save|load, 20 start/stop cycles, a 1 GiB build context), bounded to 90 minutes
	BERTH_BIN=$(abspath $(BIN)/berth) BERTH_IMAGES=$(abspath $(IMAGE_OUT)) \
	  test/run-e2e.sh $(GO) test -tags 'e2e soak' -count=1 -v -run '^(TestSoak.*|TestDockerToolchain)$$' -timeout 90m ./test/e2e/

bench: deps build image ## start phases vs a bare boot, port and share throughput, tray idle CPU: ratios in one run
	BERTH_BIN=$(abspath $(BIN)/berth) BERTH_IMAGES=$(abspath $(IMAGE_OUT)) BERTH_TRAY_BIN=$(abspath $(BIN)/berth-tray) \
	  test/run-e2e.sh $(GO) test -tags e2e -count=1 -run '^$$' -bench . -benchtime 1x -timeout 60m ./test/e2e/

# staticcheck is pinned in tools/lint/go.mod (a module of its own, so its dependencies stay
# out of berth's go.mod); it is built once into $(OUT)/tools.
STATICCHECK := $(OUT)/tools/staticcheck

lint: ## gofmt, go vet and staticcheck for every shipped platform
	@files=$$(git ls-files -co --exclude-standard -- '*.go' | while read -r f; do if [ -f "$$f" ]; then echo "$$f"; fi; done); \
	  bad=$$(gofmt -l $$files); test -z "$$bad" || { echo "$$bad"; echo "gofmt needed" >&2; exit 1; }
	@mkdir -p $(OUT)/tools
	$(GO) build -C tools/lint -o $(abspath $(STATICCHECK)) honnef.co/go/tools/cmd/staticcheck
	$(GO) vet ./...
	GOOS=windows $(GO) vet ./...
	# fyne needs cgo on darwin; typecheck-darwin covers gui and the tray with cgo on.
	pkgs=$$(GOOS=darwin CGO_ENABLED=0 $(GO) list ./... 2>/dev/null | grep -v -e /gui -e /cmd/berth-tray); \
	  GOOS=darwin CGO_ENABLED=0 $(GO) vet $$pkgs
	# staticcheck per platform, merged: code only one platform uses is not "unused".
	$(STATICCHECK) -f binary ./... >$(OUT)/tools/staticcheck-linux.bin
	GOOS=windows $(STATICCHECK) -f binary ./... >$(OUT)/tools/staticcheck-windows.bin
	pkgs=$$(GOOS=darwin CGO_ENABLED=0 $(GO) list ./... 2>/dev/null | grep -v -e /gui -e /cmd/berth-tray); \
	  GOOS=darwin CGO_ENABLED=0 $(STATICCHECK) -f binary $$pkgs >$(OUT)/tools/staticcheck-darwin.bin
	$(STATICCHECK) -merge $(OUT)/tools/staticcheck-linux.bin $(OUT)/tools/staticcheck-windows.bin $(OUT)/tools/staticcheck-darwin.bin

# Every fuzz target (func FuzzX in a _test.go) runs for FUZZTIME; its seed corpus (f.Add and
# testdata/fuzz/FuzzX) runs in every `go test`. A crash leaves its input in testdata/fuzz:
# commit it with the fix.
FUZZTIME ?= 10s
# What `make test` gives each target: 22 targets at 3 s took 2m55s on a loaded 2-core machine
# (most of it the instrumented builds); 2 s keeps the whole run under three minutes.
TEST_FUZZTIME ?= 2s

fuzz: ## run every fuzz target for FUZZTIME each (default 10s)
	@log=$$(mktemp); trap 'rm -f "$$log"' EXIT; \
	for f in $$(grep -rl --include='*_test.go' --exclude-dir=_output --exclude-dir=tools '^func Fuzz' . | sort); do \
	  for t in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' "$$f"); do \
	    echo "$$t ($$(dirname $$f))"; \
	    if ! $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) "$$(dirname $$f)" >"$$log" 2>&1; then \
	      if grep -qx '    context deadline exceeded' "$$log" && ! grep -q 'Failing input written' "$$log"; then \
	        echo "  stopped by Go 1.26's fuzz deadline race (golang/go#75804), no failing input"; \
	      else cat "$$log"; exit 1; fi; \
	    fi; \
	  done; \
	done

CROSS_BERTH := darwin/amd64 darwin/arm64 windows/amd64 linux/amd64 linux/arm64
CROSS_AGENT := linux/amd64 linux/arm64

cross: cross-berth cross-toolchain ## build berth, the agent and the docker toolchain for every shipped platform

# `make test` cross-builds berth and the agent only: the docker toolchain for five platforms
# is ~15 large builds (see docs/install.md for the timings) and is the same pinned release
# code every time; `make cross` (and `make msi`) build it.
test-cross: cross-berth

cross-toolchain: ## build docker compose, buildx and the docker CLI for every shipped platform under $(OUT)/cross/<os>-<arch>
	@for p in $(CROSS_BERTH); do \
	  os=$${p%/*}; arch=$${p#*/}; echo "docker toolchain $$os/$$arch"; \
	  GO=$(GO) tools/build.sh --goos $$os --goarch $$arch --out $(OUT)/cross/$$os-$$arch; \
	done

cross-berth: ## build berth for every shipped platform (darwin without cgo) and the agent for each guest
	@for p in $(CROSS_BERTH); do \
	  os=$${p%/*}; arch=$${p#*/}; ext=; [ $$os = windows ] && ext=.exe; \
	  echo "berth $$os/$$arch"; \
	  CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(OUT)/cross/$$os-$$arch/berth$$ext ./cmd/berth; \
	done
	@echo "berth-tray windows/amd64 (cgo, mingw)"
	CGO_ENABLED=1 CC=x86_64-w64-mingw32-gcc GOOS=windows GOARCH=amd64 $(GO) build -trimpath -ldflags '$(LDFLAGS) -H=windowsgui' -o $(OUT)/cross/windows-amd64/berth-tray.exe ./cmd/berth-tray
	@for p in $(CROSS_AGENT); do \
	  os=$${p%/*}; arch=$${p#*/}; echo "berth-agent $$os/$$arch"; \
	  CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(OUT)/cross/$$os-$$arch/berth-agent ./cmd/berth-agent; \
	done

sign-darwin: ## on macOS: build berth with cgo (vz) and sign it with the virtualization entitlement (BERTH_SIGN_IDENTITY for a named identity)
	@[ "$$(uname -s)" = Darwin ] || { echo "sign-darwin needs macOS (codesign and the macOS SDK)" >&2; exit 1; }
	CGO_ENABLED=1 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/berth ./cmd/berth
	installer/macos/sign.sh $(BIN)/berth

typecheck-darwin: ## type-check every darwin file (vm/vz included) against the real Code-Hex/vz source
	$(GO) run ./tools/typecheck ./...

install: build ## install berth for this user: ~/.local/bin, shell completions, docker context, and the guest image `make image` built (INSTALL_FLAGS: e.g. --start-at-login)
	$(BIN)/berth install $(INSTALL_FLAGS)

uninstall: build ## remove what `make install` added (UNINSTALL_FLAGS=--data also deletes every instance and its data)
	$(BIN)/berth uninstall $(UNINSTALL_FLAGS)

bundle: image ## guest image bundles for download: _output/bundle/berth-image-<version>-<arch>.tar.gz + .sha256
	@for a in $(IMAGE_ARCHES); do \
	  installer/bundle/bundle.sh --arch $$a --version $(VERSION) --image $(IMAGE_OUT)/$$a --out $(OUT)/bundle; \
	done

deb: build image ## Debian package (berth, berth-tray if built, this arch's guest image, completions, systemd user unit, the docker toolchain) under _output/deb
	installer/deb/build.sh --version $(VERSION) --arch $(HOST_ARCH) --bin $(BIN)/berth $(if $(wildcard $(BIN)/berth-tray),--tray $(BIN)/berth-tray) --image-dir $(IMAGE_OUT) --toolchain $(BIN) --out $(OUT)/deb

msi: cross ## Windows installer under _output/windows (Authenticode-signed when BERTH_WIN_PFX or BERTH_WIN_CERT/BERTH_WIN_KEY are set)
	installer/windows/build.sh --version $(VERSION) --cross $(OUT)/cross --out $(OUT)/windows $(if $(BERTH_WIN_PFX)$(BERTH_WIN_CERT),--sign)

app-darwin: ## on macOS: Berth.app and its .dmg under _output/macos, signed (BERTH_SIGN_IDENTITY for a named identity)
	@[ "$$(uname -s)" = Darwin ] || { echo "app-darwin needs macOS (codesign, hdiutil and the macOS SDK)" >&2; exit 1; }
	CGO_ENABLED=1 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(OUT)/macos/bin/berth ./cmd/berth
	CGO_ENABLED=1 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(OUT)/macos/bin/berth-tray ./cmd/berth-tray
	GO=$(GO) tools/build.sh --out $(OUT)/macos/bin
	installer/macos/bundle.sh --version $(VERSION) --cli $(OUT)/macos/bin/berth --tray $(OUT)/macos/bin/berth-tray \
	  --image-dir $(IMAGE_OUT) --toolchain $(OUT)/macos/bin --out $(OUT)/macos --sign --dmg

clean: ## remove build outputs (the image download cache too)
	rm -rf $(OUT)
