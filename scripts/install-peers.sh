#!/usr/bin/env bash
# Builds the real peer tools the tests run beside the jobs, pinned, from the
# Go module proxy, into the ignored .tools/bin/. Test peers only: the product
# is Rust. Idempotent: a tool whose pinned version is already there is skipped
# (the stamp file .tools/bin/NAME.version holds what was built).
#
#   bash scripts/install-peers.sh            # all
#   bash scripts/install-peers.sh trivy      # some
#
# Cold, on 2 cores: trivy ≈ 6 min, each cosign ≈ 3 min, containerd ≈ 2 min,
# crane ≈ 30 s, trivy-db-fixture ≈ 1 min (the Go build cache is kept between
# runs on one machine).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
bin=$root/.tools/bin
mkdir -p "$bin"

TRIVY_VERSION=v0.74.0
COSIGN_V2_VERSION=v2.6.5
COSIGN_V3_VERSION=v3.1.3
CONTAINERD_VERSION=v2.4.2
GGCR_VERSION=v0.22.1

command -v go >/dev/null || { echo "install-peers: go is not installed" >&2; exit 2; }
export GOFLAGS=-buildvcs=false CGO_ENABLED=0

# build NAME VERSION PACKAGE [ENV…]: go install PACKAGE@VERSION, renamed to NAME.
build() {
  local name=$1 version=$2 pkg=$3
  shift 3
  local stamp="$pkg@$version${LDFLAGS_X:+ $LDFLAGS_X}"
  if [ -x "$bin/$name" ] && [ "$(cat "$bin/$name.version" 2>/dev/null)" = "$stamp" ]; then
    echo "$name: $version (already built)"
    return
  fi
  local tmp
  tmp=$(mktemp -d)
  echo "$name: building $pkg@$version"
  local start=$SECONDS
  env "$@" GOBIN="$tmp" go install -trimpath -ldflags="-s -w${LDFLAGS_X:+ $LDFLAGS_X}" "$pkg@$version"
  mv "$tmp/$(basename "$pkg")" "$bin/$name"
  rm -rf "$tmp"
  echo "$stamp" >"$bin/$name.version"
  echo "$name: built in $((SECONDS - start)) s"
}

want() { [ -z "$SELECTED" ] || [[ " $SELECTED " == *" $1 "* ]]; }
SELECTED="$*"

# trivy v0.74 uses encoding/json/v2, behind GOEXPERIMENT=jsonv2 in Go 1.25+
# (its release builds set the same).
# Its version string is set at link time, as its release build does
# (goreleaser.yml); without it `trivy --version` and its reports say "dev".
if want trivy; then
  LDFLAGS_X="-X github.com/aquasecurity/trivy/pkg/version/app.ver=${TRIVY_VERSION#v}" \
    build trivy "$TRIVY_VERSION" github.com/aquasecurity/trivy/cmd/trivy GOEXPERIMENT=jsonv2
  # Its module source stays in the Go module cache: the tests read trivy's
  # own contrib/gitlab.tpl from there (a no-op when it is already there).
  go mod download "github.com/aquasecurity/trivy@$TRIVY_VERSION"
fi
# The test peer that builds trivy's vulnerability DB from fixture advisories
# (tests/peers/trivy-db, its own Go module): rebuilt when its source changes.
if want trivy-db-fixture || want trivy; then
  src=tests/peers/trivy-db
  stamp="local:$(cat "$src/go.mod" "$src/go.sum" "$src"/*.go | sha256sum | cut -c1-16)"
  if [ -x "$bin/trivy-db-fixture" ] && [ "$(cat "$bin/trivy-db-fixture.version" 2>/dev/null)" = "$stamp" ]; then
    echo "trivy-db-fixture: $stamp (already built)"
  else
    echo "trivy-db-fixture: building $src"
    start=$SECONDS
    (cd "$src" && go build -trimpath -ldflags="-s -w" -o "$bin/trivy-db-fixture" .)
    echo "$stamp" >"$bin/trivy-db-fixture.version"
    echo "trivy-db-fixture: built in $((SECONDS - start)) s"
  fi
fi
if want crane; then build crane "$GGCR_VERSION" github.com/google/go-containerregistry/cmd/crane; fi
if want cosign; then
  build cosign-v2 "$COSIGN_V2_VERSION" github.com/sigstore/cosign/v2/cmd/cosign
  build cosign-v3 "$COSIGN_V3_VERSION" github.com/sigstore/cosign/v3/cmd/cosign
fi
if want containerd; then
  build containerd "$CONTAINERD_VERSION" github.com/containerd/containerd/v2/cmd/containerd
  build ctr "$CONTAINERD_VERSION" github.com/containerd/containerd/v2/cmd/ctr
fi
