#!/usr/bin/env bash
# Job image sizes, measured offline (no base image can be pulled here).
#
# Builds every job image (docker/<job>.Dockerfile or docker/job.Dockerfile) for linux/arm64 and linux/amd64 with
#   buildah build --platform linux/arm64,linux/amd64 --build-arg BINARIES=prebuilt
# from the static musl binaries of scripts/build-musl.sh, pushes each
# manifest list to an OCI layout, and prints per job and architecture the
# sum of the layer sizes, uncompressed (the layer tars) and gzip-compressed
# (what a registry stores), against the 15 MB target.
#
# What is real and what stands in (see RESULTS.md):
#   BASE=scratch      instead of gcr.io/distroless/static-debian12:debug-nonroot
#                     (its published size is added as an estimate in RESULTS.md)
#   TRIVY_IMAGE=scratch  scan-image: only our layer on top of trivy's image
#   HELPER_IMAGE      a local image built here from Debian's busybox-static,
#                     Debian's CA bundle and an `apk` stand-in that installs
#                     nothing: the rootfs stages run as written, but
#                     bump-manifest's Alpine packages (git, busybox, musl…)
#                     are not in the measured image (estimated in RESULTS.md)
#
# Environment: SECDELIV_MUSL_DIR (default target/) holds <triple>/release/<job>;
# SKIP_BUILD=1 skips `scripts/build-musl.sh`; WORK (default bench/out/images).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
MUSL_DIR=${SECDELIV_MUSL_DIR:-$ROOT/target}
WORK=${WORK:-$ROOT/bench/out/images}
JOBS=(promote-image sign-image notify-argocd bump-manifest scan-image)
TRIPLES=(x86_64-unknown-linux-musl aarch64-unknown-linux-musl)
TARGET_MB=15

for tool in buildah jq gzip dpkg-deb apt-get; do
  command -v "$tool" >/dev/null || { echo "run.sh: $tool is required" >&2; exit 1; }
done
[ -f /etc/ssl/certs/ca-certificates.crt ] || { echo "run.sh: needs Debian's ca-certificates" >&2; exit 1; }

if [ "${SKIP_BUILD:-}" != 1 ]; then
  CARGO_TARGET_DIR=$MUSL_DIR bash scripts/build-musl.sh >&2
fi

rm -rf "$WORK"
mkdir -p "$WORK"/{helper/keys/x86_64,helper/keys/aarch64,ctx,oci,deb}
B=(buildah --storage-driver vfs --root "$WORK/storage" --runroot "$WORK/run")
# buildah 1.28 (Debian 12) does not set BUILDPLATFORM itself:
# without it `FROM --platform=$BUILDPLATFORM` stages take the target platform.
case "$(uname -m)" in x86_64) build_platform=linux/amd64 ;; aarch64) build_platform=linux/arm64 ;; *) build_platform=linux/$(uname -m) ;; esac

# --- the helper image (build platform) ------------------------------------------
(cd "$WORK/deb" && apt-get download busybox-static >/dev/null 2>&1) \
  || { echo "run.sh: apt-get download busybox-static failed (run apt-get update)" >&2; exit 1; }
dpkg-deb -x "$WORK"/deb/busybox-static_*.deb "$WORK/deb/x"
h=$WORK/helper
cp "$WORK/deb/x/bin/busybox" "$h/busybox"
cp /etc/ssl/certs/ca-certificates.crt "$h/"
cat >"$h/apk" <<'EOF'
#!/bin/sh
# Offline stand-in for Alpine's apk (bench/images/run.sh): installs nothing;
# with --root it creates the directories the Dockerfiles expect there.
root=
while [ $# -gt 0 ]; do case "$1" in --root) root=$2; shift ;; esac; shift; done
[ -z "$root" ] || mkdir -p "$root/bin" "$root/usr/libexec/git-core" "$root/usr/share/git-core/templates" "$root/etc/apk"
echo "apk: offline stand-in, nothing installed" >&2
EOF
chmod +x "$h/apk"
touch "$h/keys/x86_64/offline.rsa.pub" "$h/keys/aarch64/offline.rsa.pub"
echo "offline" >"$h/repositories"
cat >"$h/Dockerfile" <<'EOF'
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
COPY apk /sbin/apk
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY keys/ /usr/share/apk/keys/
COPY repositories /etc/apk/repositories
ENV PATH=/sbin:/bin
EOF
HELPER=localhost/secdeliv-bench/helper:offline
"${B[@]}" build --isolation chroot --pull=never -q -t "$HELPER" "$h" >/dev/null

# --- the context: the prebuilt binaries in cargo's layout, and docker/'s scripts ---
mkdir -p "$WORK/ctx/docker"
cp "$ROOT"/docker/*.sh "$WORK/ctx/docker/"
for t in "${TRIPLES[@]}"; do
  mkdir -p "$WORK/ctx/bin/$t/release"
  for j in "${JOBS[@]}"; do
    f=$MUSL_DIR/$t/release/$j
    [ -f "$f" ] || { echo "run.sh: $f missing: bash scripts/build-musl.sh" >&2; exit 1; }
    cp "$f" "$WORK/ctx/bin/$t/release/$j"
  done
done

# --- build, push to an OCI layout, measure ---------------------------------------
VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
blob() { echo "$1/blobs/sha256/${2#sha256:}"; }
mib() { awk -v b="$1" 'BEGIN { printf "%.2f", b / 1048576 }'; }
mb() { awk -v b="$1" 'BEGIN { printf "%.2f", b / 1000000 }'; }

printf '%-14s %-6s %12s %8s %8s %12s %8s  %s\n' job arch uncompressed MiB MB gzip MiB "≤ ${TARGET_MB} MB?"
for j in "${JOBS[@]}"; do
  list=localhost/secdeliv-bench/$j:offline
  extra=(--build-arg BASE=scratch)
  [ "$j" = scan-image ] && extra=(--build-arg TRIVY_IMAGE=scratch)
  # promote, sign and notify share docker/job.Dockerfile (ARG JOB).
  dockerfile=$ROOT/docker/$j.Dockerfile
  [ -f "$dockerfile" ] || { dockerfile=$ROOT/docker/job.Dockerfile; extra+=(--build-arg JOB="$j"); }
  start=$SECONDS
  "${B[@]}" build --isolation chroot --pull=never \
    --platform linux/arm64,linux/amd64 --manifest "$list" \
    --build-arg BUILDPLATFORM="$build_platform" \
    --build-arg BINARIES=prebuilt --build-arg BIN_DIR=bin \
    --build-arg HELPER_IMAGE="$HELPER" "${extra[@]}" \
    --build-arg VERSION="$VERSION" \
    -f "$dockerfile" "$WORK/ctx" >"$WORK/$j.build.log" 2>&1 \
    || { tail -20 "$WORK/$j.build.log" >&2; echo "run.sh: building $j failed (log: $WORK/$j.build.log)" >&2; exit 1; }
  build_s=$((SECONDS - start))
  L=$WORK/oci/$j
  "${B[@]}" manifest push --all -q "$list" "oci:$L:latest" >/dev/null
  index=$(jq -r '.manifests[0].digest' "$L/index.json")
  for arch in arm64 amd64; do
    m=$(jq -r --arg a "$arch" '.manifests[] | select(.platform.architecture == $a) | .digest' "$(blob "$L" "$index")")
    [ -n "$m" ] || { echo "run.sh: $j has no $arch image" >&2; exit 1; }
    raw=0 gz=0
    for layer in $(jq -r '.layers[].digest' "$(blob "$L" "$m")"); do
      f=$(blob "$L" "$layer")
      gz=$((gz + $(stat -c %s "$f")))
      raw=$((raw + $(gzip -dc "$f" | wc -c)))
    done
    # The binary in the image is the one for this architecture (ELF e_machine).
    machine=
    for layer in $(jq -r '.layers[].digest' "$(blob "$L" "$m")"); do
      machine=$(gzip -dc "$(blob "$L" "$layer")" | tar -xO "usr/local/bin/$j" 2>/dev/null | od -An -tu2 -j18 -N2 | tr -d ' ') || true
      [ -n "$machine" ] && break
    done
    want=62; [ "$arch" = arm64 ] && want=183
    [ "$machine" = "$want" ] || { echo "run.sh: $j $arch: /usr/local/bin/$j has e_machine '$machine', not $want" >&2; exit 1; }
    verdict=yes; [ "$raw" -le $((TARGET_MB * 1000000)) ] || verdict=no
    [ "$j" = scan-image ] && verdict="n/a (our layer only; trivy's image not included)"
    [ "$j" = bump-manifest ] && verdict="$verdict (without Alpine's git & co., see RESULTS.md)"
    [ "$j" != scan-image ] && [ "$j" != bump-manifest ] && verdict="$verdict (BASE=scratch; + distroless, see RESULTS.md)"
    printf '%-14s %-6s %12s %8s %8s %12s %8s  %s\n' "$j" "$arch" "$raw" "$(mib "$raw")" "$(mb "$raw")" "$gz" "$(mib "$gz")" "$verdict"
    echo "$j $arch $raw $gz" >>"$WORK/sizes.txt"
  done
  echo "$j build ${build_s}s" >>"$WORK/times.txt"
done
echo
echo "layer contents: tar -tvzf \$(blob) under $WORK/oci/<job>; build logs: $WORK/<job>.build.log; build times:"
sed 's/^/  /' "$WORK/times.txt"
