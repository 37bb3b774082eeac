#!/usr/bin/env bash
# Builds examples/sensor-app as static musl binaries for linux/arm64 and
# linux/amd64 into target/sensor-app/<triple>/release/sensor-app, the layout
# its Dockerfile's BINARIES=prebuilt path packages. No C: rust-lld links
# them, so no cross toolchain is needed. Built with `cargo auditable`: each
# binary carries its crate list (section .dep-v0), which is how trivy finds
# the app's crates in a FROM scratch image.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
command -v cargo-auditable >/dev/null || {
  echo "build-sensor-app: cargo-auditable is missing: run scripts/install-deps.sh (cargo install --locked cargo-auditable)" >&2
  exit 2
}
export CARGO_TARGET_DIR="${SENSOR_APP_TARGET_DIR:-$root/target/sensor-app}"
for t in aarch64-unknown-linux-musl x86_64-unknown-linux-musl; do
  rustup target list --installed | grep -qx "$t" || rustup target add "$t" >/dev/null
  (cd examples/sensor-app && RUSTFLAGS="-C linker=rust-lld -C target-feature=+crt-static" \
    cargo auditable build --quiet --release --locked --target "$t")
  echo "sensor-app: $CARGO_TARGET_DIR/$t/release/sensor-app ($(stat -c %s "$CARGO_TARGET_DIR/$t/release/sensor-app") bytes)"
done
