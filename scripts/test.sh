#!/usr/bin/env bash
# The project's test command (README): every crate's unit and integration
# tests. The end-to-end tests run the job binaries themselves, so they are
# built first (cargo test alone builds only each package's own binaries),
# with the sensor-app binaries the e2e pipeline packages.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --workspace --bins --locked
bash scripts/build-sensor-app.sh
exec cargo test --workspace --locked "$@"
