#!/usr/bin/env bash
# Benchmark: registry requests (and wall time) to sign an image digest that is
# already pushed, by sign-image and, beside it in the same run, by sigstore-rs's
# cosign client (jobs/sign-image/examples/sigstore_rs_sign.rs). The cosign
# binary is not installable on these machines, and Debian's skopeo has its
# sigstore support patched out.
#
# Requests are counted by the registry itself (docker-registry's access log),
# so both tools are measured the same way.
#
# Needs: docker-registry, skopeo, jq, sha256sum, tar (Debian packages
# docker-registry skopeo jq coreutils tar). Usage: bench/sign-image/run.sh
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$(cd "$(dirname "$0")/../.." && pwd)/target}"
(cd "$root" && cargo build --release -p sign-image --bin sign-image --example sigstore_rs_sign --quiet)
bin="$CARGO_TARGET_DIR/release/sign-image"
peer="$CARGO_TARGET_DIR/release/examples/sigstore_rs_sign"

work="$(mktemp -d)"
reg_pid=""
cleanup() { [ -n "$reg_pid" ] && kill "$reg_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

# --- a registry with its access log on -------------------------------------
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
host="127.0.0.1:$port"
cat >"$work/config.yml" <<YML
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $work/storage
http:
  addr: $host
YML
env -u REGISTRY_USER -u REGISTRY_PASSWORD docker-registry serve "$work/config.yml" >"$work/registry.log" 2>&1 &
reg_pid=$!
for _ in $(seq 1 200); do curl -fsS "http://$host/v2/" >/dev/null 2>&1 && break; sleep 0.05; done

requests() { grep -cE '"(GET|HEAD|POST|PUT|PATCH|DELETE) /v2/' "$work/registry.log" || true; }

# --- two two-platform OCI images (tags 1.0 and 2.0), pushed with skopeo ----
blob() { # layout file media-type → prints descriptor JSON
  local d s; d="$(sha256sum "$2" | cut -d' ' -f1)"; s="$(stat -c %s "$2")"
  cp "$2" "$1/blobs/sha256/$d"
  jq -cn --arg m "$3" --arg d "sha256:$d" --argjson s "$s" '{mediaType:$m,digest:$d,size:$s}'
}
build_image() { # tag → OCI layout $work/layout-<tag>; prints the index digest
  local tag="$1" layout="$work/layout-$1" entries=() arch layer diff config m idx
  mkdir -p "$layout/blobs/sha256"
  for arch in arm64 amd64; do
    mkdir -p "$work/rootfs-$tag-$arch"; head -c 1048576 /dev/urandom >"$work/rootfs-$tag-$arch/data"
    tar -C "$work/rootfs-$tag-$arch" -cf "$work/layer-$tag-$arch.tar" data
    layer="$(blob "$layout" "$work/layer-$tag-$arch.tar" application/vnd.oci.image.layer.v1.tar)"
    diff="$(echo "$layer" | jq -r .digest)"
    jq -cn --arg a "$arch" --arg d "$diff" '{architecture:$a,os:"linux",rootfs:{type:"layers",diff_ids:[$d]},config:{}}' >"$work/config-$tag-$arch.json"
    config="$(blob "$layout" "$work/config-$tag-$arch.json" application/vnd.oci.image.config.v1+json)"
    jq -cn --argjson c "$config" --argjson l "$layer" '{schemaVersion:2,mediaType:"application/vnd.oci.image.manifest.v1+json",config:$c,layers:[$l]}' >"$work/manifest-$tag-$arch.json"
    m="$(blob "$layout" "$work/manifest-$tag-$arch.json" application/vnd.oci.image.manifest.v1+json)"
    entries+=("$(echo "$m" | jq -c --arg a "$arch" '. + {platform:{architecture:$a,os:"linux"}}')")
  done
  printf '%s\n' "${entries[@]}" | jq -cs '{schemaVersion:2,mediaType:"application/vnd.oci.image.index.v1+json",manifests:.}' >"$work/index-$tag.json"
  idx="$(blob "$layout" "$work/index-$tag.json" application/vnd.oci.image.index.v1+json)"
  echo "$idx" | jq -c --arg t "$tag" '{schemaVersion:2,manifests:[. + {annotations:{"org.opencontainers.image.ref.name":$t}}]}' >"$layout/index.json"
  echo '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"
  for repo in bench/ours bench/peer; do
    skopeo copy --all --preserve-digests --dest-tls-verify=false "oci:$layout:$tag" "docker://$host/$repo:$tag" >/dev/null
  done
  echo "$idx" | jq -r .digest
}
digest="$(build_image 1.0)"
digest2="$(build_image 2.0)"

# --- keys ------------------------------------------------------------------
export COSIGN_PASSWORD=bench-password
(cd "$work" && "$bin" generate-key-pair 2>/dev/null)

measure() { # label command… → "label requests seconds"
  local label="$1"; shift
  local before after t0 t1
  before="$(requests)"; t0="$(date +%s.%N)"
  "$@" >/dev/null 2>"$work/last.err" || { cat "$work/last.err" >&2; exit 1; }
  t1="$(date +%s.%N)"; sleep 0.2; after="$(requests)"
  printf '%-52s %4d requests  %6.3f s\n' "$label" "$((after - before))" "$(echo "$t1 - $t0" | bc)"
  echo "$((after - before))" >"$work/count-$label"
}

echo "images: $host/bench/{ours,peer}@{$digest,$digest2} (indexes, linux/arm64 + linux/amd64)"
# 1.0 is the first signature in a fresh repository (the shared `{}` config is
# uploaded once); 2.0 is a new digest in a repository that already holds a
# signature (the config is a single mount request).
measure sign-image-first-in-repo "$bin" sign "$host/bench/ours@$digest" --key "$work/cosign.key" --insecure-registry "$host"
measure sign-image-new-digest "$bin" sign "$host/bench/ours@$digest2" --key "$work/cosign.key" --insecure-registry "$host"
measure sign-image-again "$bin" sign "$host/bench/ours@$digest" --key "$work/cosign.key" --insecure-registry "$host"
measure sign-image-verify "$bin" verify "$host/bench/ours@$digest" --key "$work/cosign.pub" --insecure-registry "$host"
measure sigstore-rs-first-in-repo "$peer" "$host/bench/peer@$digest" "$work/cosign.key"
measure sigstore-rs-new-digest "$peer" "$host/bench/peer@$digest2" "$work/cosign.key"
measure sigstore-rs-again "$peer" "$host/bench/peer@$digest" "$work/cosign.key"

c() { cat "$work/count-$1"; }
echo "ratio (sign-image / sigstore-rs requests): first in repo $(echo "scale=2; $(c sign-image-first-in-repo) / $(c sigstore-rs-first-in-repo)" | bc), new digest $(echo "scale=2; $(c sign-image-new-digest) / $(c sigstore-rs-new-digest)" | bc)"
echo "target: signing an already-pushed digest <= 6 requests: sign-image new digest=$(c sign-image-new-digest), first in a fresh repository=$(c sign-image-first-in-repo), repeat=$(c sign-image-again)"
