#!/usr/bin/env bash
# The project's test command (README): every crate's unit and integration
# tests. The end-to-end tests run the job binaries themselves, so they are
# built first (cargo test alone builds only each package's own binaries),
# with the sensor-app binaries the e2e pipeline packages and the static
# musl job binaries the arm64 tests run under qemu.
set -euo pipefail
cd "$(dirname "$0")/.."
# The real peers the tests run beside the jobs (trivy, cosign v2 and v3,
# containerd and ctr, crane), pinned, built from the Go module proxy into .tools/bin.
bash scripts/install-peers.sh
cargo build --workspace --bins --locked
bash scripts/build-sensor-app.sh
# Static musl binaries of the jobs for both architectures (tests/e2e/tests/arm64.rs
# runs the aarch64 ones under qemu). Without cross-crate LTO: the cold build takes
# about 5 instead of 8 minutes on 2 cores; published images use the release profile as is.
CARGO_PROFILE_RELEASE_LTO=false bash scripts/build-musl.sh >/dev/null
cargo test --workspace --locked "$@"
# The device's verifier is an aarch64 static binary: its containerd contract
# tests again, that binary under qemu-aarch64-static.
SECDELIV_VERIFIER_AARCH64=$(realpath "${CARGO_TARGET_DIR:-target}")/aarch64-unknown-linux-musl/release/secdeliv-verifier \
  cargo test --locked -p containerd-verifier --test contract "$@"
