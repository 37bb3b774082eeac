#!/usr/bin/env bash
# Benchmark: registry requests and wall time to sign and verify one digest in
# each signature format (legacy `.sig` tag, cosign 3 bundle referrer), by
# sign-image and, beside it in the same run against the same registry, by the
# real cosign v3 (.tools/bin/cosign-v3, built by scripts/install-peers.sh
# cosign), on both kinds of registry: docker-registry 2.8 (no referrers API:
# referrers tag schema) and go-containerregistry's registry with the OCI 1.1
# referrers API (tests/peers/ociregistry).
#
# Requests are counted by each registry's own log (docker-registry's access
# log; the ggcr registry logs one line per request), so both tools are
# measured the same way. Each sign is of a fresh digest, in a repository that
# already holds a signature of the same format (so one-off uploads of the
# shared empty config are not counted).
#
# Needs: docker-registry, crane (.tools/bin), cosign-v3 (.tools/bin), go (to
# build the ggcr registry once), bc. Usage: bash bench/sign-image/formats.sh
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
(cd "$root" && CARGO_PROFILE_RELEASE_LTO="${CARGO_PROFILE_RELEASE_LTO:-false}" \
  cargo build --release -p sign-image --bin sign-image --quiet)
bin="$CARGO_TARGET_DIR/release/sign-image"
cosign="$root/.tools/bin/cosign-v3"
crane="$root/.tools/bin/crane"
for t in "$cosign" "$crane"; do
  [ -x "$t" ] || { echo "formats.sh: $t missing: bash scripts/install-peers.sh cosign crane" >&2; exit 2; }
done

work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

# --- the ggcr registry with the referrers API (tests/peers/ociregistry) ------
oci_bin="$work/ociregistry"
(cd "$root/tests/peers/ociregistry" && GOFLAGS=-buildvcs=false CGO_ENABLED=0 go build -o "$oci_bin" .)
"$oci_bin" >"$work/oci.port" 2>"$work/oci.log" &
pids+=($!)
for _ in $(seq 1 200); do [ -s "$work/oci.port" ] && break; sleep 0.05; done
oci_host="127.0.0.1:$(head -1 "$work/oci.port")"

# --- docker-registry 2.8 with its access log -------------------------------
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
dr_host="127.0.0.1:$port"
cat >"$work/config.yml" <<YML
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $work/storage
http:
  addr: $dr_host
YML
env -u REGISTRY_USER -u REGISTRY_PASSWORD docker-registry serve "$work/config.yml" >"$work/dr.log" 2>&1 &
pids+=($!)
for h in "$dr_host" "$oci_host"; do
  for _ in $(seq 1 200); do curl -fsS "http://$h/v2/" >/dev/null 2>&1 && break; sleep 0.05; done
done

requests() { # host → requests so far
  if [ "$1" = "$dr_host" ]; then
    grep -cE '"(GET|HEAD|POST|PUT|PATCH|DELETE) /v2/' "$work/dr.log" || true
  else
    grep -cE 'ociregistry: .* (GET|HEAD|POST|PUT|PATCH|DELETE) /v2/' "$work/oci.log" || true
  fi
}

n=0
image() { # host repo → a fresh single-platform image's digest reference
  n=$((n + 1))
  mkdir -p "$work/img$n" && head -c 4096 /dev/urandom >"$work/img$n/data"
  tar -C "$work/img$n" -cf "$work/img$n.tar" data
  "$crane" append --insecure -f "$work/img$n.tar" -t "$1/$2:i$n" >/dev/null 2>&1
  echo "$1/$2@$("$crane" digest --insecure "$1/$2:i$n")"
}

export COSIGN_PASSWORD=bench-password COSIGN_YES=true
mkdir -p "$work/home"
(cd "$work" && "$bin" generate-key-pair 2>/dev/null)
key="$work/cosign.key"
pub="$work/cosign.pub"

si_sign() { "$bin" sign "$3" --key "$key" --insecure-registry "$1" --format "$2"; }
si_verify() { "$bin" verify "$2" --key "$pub" --insecure-registry "$1"; }
co_sign() {
  local extra=()
  [ "$2" = legacy ] && extra=(--new-bundle-format=false)
  HOME="$work/home" "$cosign" sign --key "$key" --tlog-upload=false --use-signing-config=false \
    --allow-http-registry "${extra[@]}" "$3"
}
co_verify() { HOME="$work/home" "$cosign" verify --key "$pub" --insecure-ignore-tlog=true --allow-http-registry "$2"; }

measure() { # host label command… → prints "requests seconds"
  local host="$1"; shift
  local before after t0 t1
  before="$(requests "$host")"; t0="$(date +%s.%N)"
  "$@" >/dev/null 2>"$work/last.err" || { cat "$work/last.err" >&2; exit 1; }
  t1="$(date +%s.%N)"; sleep 0.3; after="$(requests "$host")"
  printf '%d %.3f' "$((after - before))" "$(echo "$t1 - $t0" | bc)"
}

echo "| registry | format | step | sign-image requests | sign-image s | cosign v3 requests | cosign v3 s | requests ratio | time ratio |"
echo "|---|---|---|---:|---:|---:|---:|---:|---:|"
for host in "$dr_host" "$oci_host"; do
  kind=docker-registry-2.8; [ "$host" = "$oci_host" ] && kind=ggcr-referrers-api
  for format in legacy bundle; do
    # Warm-up: one signature of this format in each repository (the shared
    # empty config blob is then present for both tools).
    si_sign "$host" "$format" "$(image "$host" "si-$format")" >/dev/null 2>&1
    co_sign "$host" "$format" "$(image "$host" "co-$format")" >/dev/null 2>&1
    si_img="$(image "$host" "si-$format")"
    co_img="$(image "$host" "co-$format")"
    read -r sr st <<<"$(measure "$host" si_sign "$host" "$format" "$si_img")"
    read -r cr ct <<<"$(measure "$host" co_sign "$host" "$format" "$co_img")"
    echo "| $kind | $format | sign | $sr | $st | $cr | $ct | $(echo "scale=2; $sr / $cr" | bc) | $(echo "scale=2; $st / $ct" | bc) |"
    read -r sr st <<<"$(measure "$host" si_verify "$host" "$si_img")"
    read -r cr ct <<<"$(measure "$host" co_verify "$host" "$co_img")"
    echo "| $kind | $format | verify | $sr | $st | $cr | $ct | $(echo "scale=2; $sr / $cr" | bc) | $(echo "scale=2; $st / $ct" | bc) |"
  done
done
