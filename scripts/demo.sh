#!/usr/bin/env bash
# The local end-to-end demo: examples/sensor-app's pipeline (one include of
# ci-templates/gitops-iot.yml) under gitlab-ci-local with the real job
# binaries: buildah builds linux/arm64 + linux/amd64, scan-image (the real
# trivy with a vulnerability DB mirrored into the local registry), promote-image
# to a local "Docker Hub", sign-image, bump-manifest into a local config repo,
# notify-argocd against the Argo CD simulator. Prints where to look at each
# stage's result. `bash scripts/demo.sh --serve` keeps the services up.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh >/dev/null
# The real trivy (v0.74.0) and the builder of the DB mirror it scans with.
bash scripts/install-peers.sh trivy >/dev/null
cargo build --quiet --workspace --bins --locked
bash scripts/build-sensor-app.sh >/dev/null
exec target/debug/demo "$@"
