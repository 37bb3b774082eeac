#!/usr/bin/env bash
# promote-image beside `skopeo copy --all`, same image, same run.
# Needs: docker-registry, skopeo (Debian packages). About 2 GB of temp space.
# Usage: bench/promote-image/run.sh [--runs N]
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$(cd "$(dirname "$0")/../.." && pwd)/target}"
cargo build --release -p promote-image
cargo build --release -p promote-image --example bench
"$CARGO_TARGET_DIR/release/examples/bench" --binary "$CARGO_TARGET_DIR/release/promote-image" "$@"
