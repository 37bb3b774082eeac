#!/usr/bin/env bash
# scan-image with the real trivy, beside trivy alone, in the same run: the
# whole job (every platform of the index, every report, the SBOMs) on the
# end-to-end image (sensor-app, linux/arm64 + linux/amd64, built by buildah
# from examples/sensor-app with the prebuilt auditable binaries) versus
# `trivy image --format json` once per platform, on the same image with the
# same DB (the fixture DB, mirrored into a local docker-registry). Each side
# starts from an empty trivy cache, so each run downloads the DB: the
# registry's access log counts the downloads per job.
#
#   RUNS=5 bash bench/scan-image/real-trivy.sh
#   SCAN_IMAGE_BIN=target/release/scan-image RUNS=5 bash bench/scan-image/real-trivy.sh   # no build
#
# Four timings, each a median: trivy alone (JSON per platform), trivy alone
# with the SBOM the job also writes (plus `trivy convert` to CycloneDX per
# platform), the whole scan-image job, and the job without --sbom. The job is
# compared like for like: with its SBOM against trivy + convert, without
# against trivy's JSON alone.
#
# Needs scripts/install-peers.sh (trivy, trivy-db-fixture), buildah,
# docker-registry, scripts/build-sensor-app.sh's binaries.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
RUNS=${RUNS:-5}
trivy=$root/.tools/bin/trivy
fixture=$root/.tools/bin/trivy-db-fixture
for t in "$trivy" "$fixture"; do
  [ -x "$t" ] || { echo "$t is missing: run scripts/install-peers.sh" >&2; exit 2; }
done
if [ -n "${SCAN_IMAGE_BIN:-}" ]; then
  scan=$SCAN_IMAGE_BIN
else
  cargo build -q --release -p scan-image
  scan=${CARGO_TARGET_DIR:-target}/release/scan-image
fi
case "$scan" in /*) ;; *) scan=$root/$scan ;; esac
bash scripts/build-sensor-app.sh >/dev/null

work=$(mktemp -d)
reg_pid=""
cleanup() {
  [ -n "$reg_pid" ] && kill "$reg_pid" 2>/dev/null && wait "$reg_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

# A registry with its access log on (to count DB downloads).
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
host=127.0.0.1:$port
cat >"$work/registry.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $work/storage
http:
  addr: $host
  secret: bench
EOF
env -u REGISTRY_HTTP_ADDR docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
reg_pid=$!
for _ in $(seq 100); do curl -fs "http://$host/v2/" >/dev/null && break; sleep 0.1; done

"$fixture" -advisories tests/peers/trivy-db/advisories.json -out "$work/db" \
  -push "$host/mirror/trivy-db:2" -insecure >/dev/null
db_layer=$(sha256sum "$work/db/db.tar.gz" | cut -c1-64)

# The e2e image: examples/sensor-app's Dockerfile, BINARIES=prebuilt, both platforms.
ctx=$work/ctx
mkdir -p "$ctx"
cp -r examples/sensor-app/Dockerfile examples/sensor-app/Cargo.toml examples/sensor-app/Cargo.lock examples/sensor-app/src "$ctx/"
for t in aarch64-unknown-linux-musl x86_64-unknown-linux-musl; do
  mkdir -p "$ctx/target/$t/release"
  cp "${SENSOR_APP_TARGET_DIR:-target/sensor-app}/$t/release/sensor-app" "$ctx/target/$t/release/"
done
b() { buildah --storage-driver vfs --root "$work/containers" --runroot "$work/run" "$@"; }
b manifest create "localhost/bench-sensor-app:latest" >/dev/null
for p in linux/arm64 linux/amd64; do
  b bud -q --isolation chroot --platform "$p" --build-arg BINARIES=prebuilt \
    --manifest "localhost/bench-sensor-app:latest" -f "$ctx/Dockerfile" "$ctx" >/dev/null
done
b manifest push -q --all --tls-verify=false --format oci --digestfile "$work/digest" \
  "localhost/bench-sensor-app:latest" "docker://$host/acme/sensor-app:bench" >/dev/null
image="$host/acme/sensor-app@$(cat "$work/digest")"
echo "image: $image (linux/arm64, linux/amd64); DB: $host/mirror/trivy-db:2 (layer sha256:${db_layer:0:12}…)"

downloads() { grep -c "GET /v2/mirror/trivy-db/blobs/sha256:$db_layer" "$work/registry.log" || true; }
now() { date +%s.%N; }
elapsed() { awk -v s="$1" -v e="$2" 'BEGIN { printf "%.3f", e - s }'; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# job DIR [--sbom FILE]: the whole scan-image job in DIR.
job() {
  local d=$1
  shift
  mkdir -p "$d"
  (cd "$d" && env -i PATH="$PATH" HOME="$d" SCAN_PLATFORMS=all "$scan" "$image" \
    --trivy "$trivy" --db-repository "$host/mirror/trivy-db:2" --skip-java-db-update \
    --insecure-registry "$host" --cache-dir "$d/cache" --fail-on none \
    --gitlab-report gl.json --sarif gl.sarif --codequality cq.json --junit junit.xml \
    --dotenv scan.env "$@" >"$d/out.txt" 2>&1) || { cat "$d/out.txt"; exit 1; }
}
# alone DIR [sbom]: trivy image (JSON) per platform, one cache; with sbom,
# also trivy convert to CycloneDX per platform.
alone() {
  local t=$1 p f
  mkdir -p "$t"
  for p in linux/arm64 linux/amd64; do
    f=$t/${p//\//-}
    (cd "$t" && env -i PATH="$PATH" HOME="$t" "$trivy" image --quiet --insecure \
      --db-repository "$host/mirror/trivy-db:2" --skip-java-db-update --cache-dir "$t/cache" \
      --scanners vuln --list-all-pkgs --format json --output "$f.json" --platform "$p" "$image")
    if [ -n "${2:-}" ]; then
      (cd "$t" && env -i PATH="$PATH" HOME="$t" "$trivy" convert --quiet --format cyclonedx \
        --output "$f.cdx.json" "$f.json")
    fi
  done
}
# time_it NAME CMD…: appends the wall time to NAME's list and the DB
# downloads to NAME_dl's.
declare -A T DL
time_it() {
  local name=$1 before s e
  shift
  before=$(downloads)
  s=$(now)
  "$@"
  e=$(now)
  T[$name]+="$(elapsed "$s" "$e") "
  DL[$name]+="$(($(downloads) - before)) "
}
for i in $(seq "$RUNS"); do
  time_it alone alone "$work/alone-$i"
  time_it alone_sbom alone "$work/alone-sbom-$i" sbom
  time_it job job "$work/job-$i" --sbom sbom.cdx.json
  time_it job_nosbom job "$work/job-nosbom-$i"
done
med() { printf '%s\n' ${T[$1]} | median; }
findings=$(grep '^SCAN_TOTAL=' "$work/job-1/scan.env" | cut -d= -f2)
platforms=$(grep '^SCAN_PLATFORMS_SCANNED=' "$work/job-1/scan.env" | cut -d= -f2 || true)
echo "median of $RUNS runs, each from an empty trivy cache; scan-image: ${platforms:-?}, $findings finding(s)"
printf '%-62s %8s   %s\n' "command" "wall s" "DB downloads per run"
printf '%-62s %8s   %s\n' "trivy image --format json, per platform" "$(med alone)" "${DL[alone]}"
printf '%-62s %8s   %s\n' "  + trivy convert --format cyclonedx, per platform" "$(med alone_sbom)" "${DL[alone_sbom]}"
printf '%-62s %8s   %s\n' "scan-image, whole job (5 reports + SBOM per platform)" "$(med job)" "${DL[job]}"
printf '%-62s %8s   %s\n' "scan-image, without --sbom" "$(med job_nosbom)" "${DL[job_nosbom]}"
for k in alone alone_sbom job job_nosbom; do echo "all runs $k: ${T[$k]}"; done
awk -v j="$(med job)" -v t="$(med alone_sbom)" -v n="$(med job_nosbom)" -v a="$(med alone)" 'BEGIN {
  printf "whole job / (trivy + convert) = %.3f (overhead %+.1f %%)\n", j / t, (j / t - 1) * 100
  printf "job without SBOM / trivy alone = %.3f (overhead %+.1f %%); goal: <= 5 %%\n", n / a, (n / a - 1) * 100
}'
