#!/bin/sh
# notify-argocd benchmark: detection latency streaming vs polling vs the peer
# (`argocd app wait`, re-enacted with curl + jq because the argocd CLI cannot
# be installed here), requests per minute while waiting, and whether each
# waiter passes early on the old revision. Uses the Argo CD API simulator of
# the test harness (tests/harness/src/argocd_sim.rs).
#   BENCH_RUNS (default 20), BENCH_IDLE_SECS (default 150)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$(cd "$(dirname "$0")/../.." && pwd)/target}"
cd "$root"
cargo build --release -p notify-argocd
cargo build --release -p notify-argocd --example bench
echo "notify-argocd $("$CARGO_TARGET_DIR/release/notify-argocd" --version), $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ)"
echo
"$CARGO_TARGET_DIR/release/examples/bench" "$CARGO_TARGET_DIR/release/notify-argocd" "$here/peer-app-wait.sh"
