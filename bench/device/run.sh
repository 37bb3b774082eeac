#!/usr/bin/env bash
# Cost of one verification by secdeliv-verifier, as containerd runs it:
# peak RSS and wall time (/usr/bin/time -v), cold (signatures read from a
# local docker-registry) and cached (the verified-digest cache answers, no
# network). Figures go to bench/RESULTS.md ("Device: containerd verifier").
#
#   bash bench/device/run.sh [VERIFIER] [SIGN_IMAGE]
#
# Defaults: target/release/secdeliv-verifier and target/debug/sign-image
# (signing is set-up, not measured). Needs docker-registry, crane
# (.tools/bin), /usr/bin/time.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
verifier=${1:-${CARGO_TARGET_DIR:-target}/release/secdeliv-verifier}
sign=${2:-${CARGO_TARGET_DIR:-target}/debug/sign-image}
crane=$root/.tools/bin/crane
for f in "$verifier" "$sign" "$crane" /usr/bin/time; do
  [ -x "$f" ] || { echo "bench/device: $f is missing (cargo build --release -p containerd-verifier; cargo build -p sign-image; bash scripts/install-peers.sh crane)" >&2; exit 2; }
done
verifier=$(realpath "$verifier")
sign=$(realpath "$sign")
tmp=$(mktemp -d)
trap 'kill $reg_pid 2>/dev/null; rm -rf "$tmp"' EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
host=127.0.0.1:$port
mkdir -p "$tmp/storage"
printf 'version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n' "$tmp/storage" "$host" >"$tmp/registry.yml"
docker-registry serve "$tmp/registry.yml" >"$tmp/registry.log" 2>&1 &
reg_pid=$!
for _ in $(seq 50); do curl -sf "http://$host/v2/" >/dev/null && break; sleep 0.1; done

# One image (a one-file layer on scratch), signed by sign-image.
head -c 4096 /dev/urandom >"$tmp/payload"
tar -C "$tmp" -cf "$tmp/layer.tar" payload
"$crane" append --insecure -f "$tmp/layer.tar" -t "$host/team/app:1" >/dev/null 2>&1
digest=$("$crane" digest --insecure "$host/team/app:1")
(cd "$tmp" && COSIGN_PASSWORD=bench "$sign" generate-key-pair >/dev/null 2>&1)
COSIGN_PASSWORD=bench "$sign" sign "$host/team/app@$digest" --key "$tmp/cosign.key" --insecure-registry "$host" >/dev/null 2>&1

printf 'scopes:\n  - name: apps\n    repositories: ["%s/team/*"]\n    keys: ["%s"]\n' "$host" "$tmp/cosign.pub" >"$tmp/verify.yaml"
printf 'mirrors:\n  "%s":\n    endpoint: ["http://%s"]\n' "$host" "$host" >"$tmp/registries.yaml"
desc=$(printf '{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":1}' "$digest")

measure() {
  local label=$1 t0 t1
  t0=$EPOCHREALTIME
  echo "$desc" | /usr/bin/time -v "$verifier" -name "$host/team/app:1" -digest "$digest" \
    -stdin-media-type application/vnd.oci.descriptor.v1+json \
    --policy "$tmp/verify.yaml" --registries "$tmp/registries.yaml" --cache "$tmp/cache/verify-cache.json" \
    >"$tmp/out" 2>"$tmp/time"
  t1=$EPOCHREALTIME
  local rss wall
  rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$tmp/time")
  wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", (b - a) * 1000 }')
  printf '%-8s peak RSS %6s kB  wall %6s ms  %s\n' "$label" "$rss" "$wall" "$(cut -c1-60 "$tmp/out")"
}
echo "secdeliv-verifier $(stat -c %s "$verifier") bytes ($verifier)"
for i in 1 2 3; do
  rm -rf "$tmp/cache"
  measure "cold#$i"
done
for i in 1 2 3; do
  measure "cached#$i"
done
