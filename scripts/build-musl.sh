#!/usr/bin/env bash
# Static musl release binaries of the five jobs, for amd64 and arm64, in
# cargo's layout (what docker/*.Dockerfile's BINARIES=prebuilt path and the
# arm64 tests read):
#
#   ${CARGO_TARGET_DIR:-target}/x86_64-unknown-linux-musl/release/<job>
#   ${CARGO_TARGET_DIR:-target}/aarch64-unknown-linux-musl/release/<job>
#
# aws-lc-rs (rustls's crypto under reqwest) compiles C, so cross-compiling
# needs a C cross compiler for musl: zig provides one through cargo-zigbuild.
# Installs what it needs (rustup targets; ziglang and cargo-zigbuild from
# PyPI) when missing, quietly; running it again only rebuilds what changed.
#
# Environment:
#   CARGO_TARGET_DIR   where to build (default target/)
#   MUSL_TARGETS       space-separated triples (default: both above)
#   MUSL_JOBS          space-separated packages (default: the five jobs and
#                      containerd-verifier, the device's secdeliv-verifier)
#   CARGO_PROFILE_RELEASE_*  cargo's own profile overrides, e.g.
#                      CARGO_PROFILE_RELEASE_LTO=false (per-crate LTO only): cold
#                      310 s instead of 501 s on 2 cores, binaries ~3 % smaller
#                      (bench/images/RESULTS.md)
set -euo pipefail
cd "$(dirname "$0")/.."

read -r -a triples <<<"${MUSL_TARGETS:-x86_64-unknown-linux-musl aarch64-unknown-linux-musl}"
read -r -a jobs <<<"${MUSL_JOBS:-scan-image promote-image sign-image bump-manifest notify-argocd containerd-verifier}"
# The versions this was tested with.
ZIGLANG_VERSION=0.17.1
CARGO_ZIGBUILD_VERSION=0.24.1

say() { printf 'build-musl: %s\n' "$*" >&2; }

# --- tools -------------------------------------------------------------------
installed=$(rustup target list --installed)
for t in "${triples[@]}"; do
  grep -qx "$t" <<<"$installed" && continue
  say "rustup target add $t"
  out=$(rustup target add "$t" 2>&1) || { printf '%s\n' "$out" >&2; exit 1; }
done

pip_install() {
  local py=python3 out
  command -v "$py" >/dev/null || { say "python3 is required (apt-get install python3 python3-pip)"; exit 1; }
  if ! "$py" -m pip --version >/dev/null 2>&1; then
    say "installing python3-pip (apt)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-pip >/dev/null
  fi
  say "pip install $*"
  # Debian's python3 is "externally managed" (PEP 668): only then is
  # --break-system-packages needed (and older pips do not know the flag).
  if ! out=$("$py" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore "$@" 2>&1); then
    if grep -q externally-managed <<<"$out"; then
      "$py" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --break-system-packages "$@"
    else
      printf '%s\n' "$out" >&2
      exit 1
    fi
  fi
  hash -r
}

have_zig() { command -v zig >/dev/null 2>&1 || python3 -m ziglang version >/dev/null 2>&1; }
want=()
have_zig || want+=("ziglang==${ZIGLANG_VERSION}")
command -v cargo-zigbuild >/dev/null 2>&1 || want+=("cargo-zigbuild==${CARGO_ZIGBUILD_VERSION}")
[ ${#want[@]} -eq 0 ] || pip_install "${want[@]}"

# --- build -------------------------------------------------------------------
pkgs=()
for j in "${jobs[@]}"; do pkgs+=(-p "$j"); done
# bump-manifest's image ships git-remote-secdeliv (package git-remote) beside it.
for j in "${jobs[@]}"; do [ "$j" = bump-manifest ] && pkgs+=(-p git-remote); done
out_root=${CARGO_TARGET_DIR:-target}
for t in "${triples[@]}"; do
  say "cargo zigbuild --release --locked --target $t ${pkgs[*]}"
  start=$SECONDS
  cargo zigbuild --release --locked --target "$t" "${pkgs[@]}" --bins
  say "$t: $((SECONDS - start)) s"
done

# --- sizes -------------------------------------------------------------------
printf '\n%-16s' "binary (bytes)"
for t in "${triples[@]}"; do printf ' %28s' "$t"; done
printf '\n'
for j in "${jobs[@]}"; do
  bin=$j
  [ "$j" = containerd-verifier ] && bin=secdeliv-verifier
  printf '%-16s' "$bin"
  for t in "${triples[@]}"; do
    f="$out_root/$t/release/$bin"
    [ -f "$f" ] || { say "missing $f"; exit 1; }
    s=$(stat -c %s "$f")
    printf ' %28s' "$s ($(awk -v s="$s" 'BEGIN { printf "%.2f MiB", s / 1048576 }'))"
  done
  printf '\n'
done
