#!/usr/bin/env bash
# Benchmark: bump one image in a fleet config repo with 1,000 device
# overlays (one kustomization per Raspberry Pi), in one commit, beside the
# floor: `sed -i` of the same change plus `git commit -a`.
#
# Both sides do the same end-to-end work: shallow clone of the (local, bare)
# config repo, edit 1,000 files, one commit, push. The floor's pure
# edit+commit part (sed + commit -a in an existing checkout) is printed too.
#
# Usage: bench/bump-manifest/run.sh [OVERLAYS]   (default 1000)
set -euo pipefail
cd "$(dirname "$0")/../.."
N="${1:-1000}"
ROUNDS="${ROUNDS:-3}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$(cd "$(dirname "$0")/../.." && pwd)/target}"
cargo build --release -q -p bump-manifest
BIN="$CARGO_TARGET_DIR/release/bump-manifest"

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
OLD_D=sha256:f4b9a364a032bc81bce365e09df62104e1688a7d2081a67e79b7802671996815
NEW_D=sha256:5ac164d971926fa0cb1493ebb84edb0cecbe84a7b0fc526720fab6e4f3c4cb95
export GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=bench@example.com GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=bench@example.com

# The fleet repo: base + N overlays, each pinning the image by tag and digest.
SEED="$WORK/seed"
mkdir -p "$SEED/apps/sensor-app/base"
cp -r examples/config-repo/apps/sensor-app/base/. "$SEED/apps/sensor-app/base/"
for i in $(seq -w 1 "$N"); do
  d="$SEED/fleet/pi-$i"
  mkdir -p "$d"
  cat > "$d/kustomization.yaml" <<YAML
# Raspberry Pi pi-$i (site $((10#$i % 37)))
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: sensors
resources:
  - ../../apps/sensor-app/base
nodeSelector: {}
images:
  - name: sensor-app
    newName: docker.io/acmeiot/sensor-app # pinned by digest
    newTag: "1.4.1"
    digest: $OLD_D
patches:
  - target: {kind: Deployment, name: sensor-app}
    patch: |-
      - op: add
        path: /spec/template/spec/nodeSelector/kubernetes.io~1hostname
        value: pi-$i
YAML
done
git -C "$SEED" init -q -b main && git -C "$SEED" add -A && git -C "$SEED" commit -qm seed
measure() { # label, command...: prints "label wall_s rss_kb"
  local label="$1"; shift
  /usr/bin/time -v -o "$WORK/time.txt" "$@" >"$WORK/out.txt" 2>"$WORK/err.txt" || { cat "$WORK/err.txt"; exit 1; }
  local wall rss
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$WORK/time.txt" | awk -F: '{ if (NF==3) print $1*3600+$2*60+$3; else print $1*60+$2 }')
  rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$WORK/time.txt")
  echo "$label $wall $rss"
}

floor_e2e() {
  git clone -q --depth 1 --branch main "file://$WORK/floor.git" "$WORK/floor"
  find "$WORK/floor/fleet" -name kustomization.yaml -print0 \
    | xargs -0 sed -i -e 's/newTag: "1\.4\.1"/newTag: "1.5.0"/' -e "s/digest: $OLD_D/digest: $NEW_D/"
  git -C "$WORK/floor" commit -qam "Deploy sensor-app 1.5.0"
  git -C "$WORK/floor" push -q origin HEAD:main
}
export -f floor_e2e
export WORK OLD_D NEW_D

floor_edit() {
  find "$WORK/floor/fleet" -name kustomization.yaml -print0 \
    | xargs -0 sed -i -e 's/newTag: "1\.5\.0"/newTag: "1.5.1"/' -e "s/digest: $NEW_D/digest: $OLD_D/"
  git -C "$WORK/floor" commit -qam "Deploy sensor-app 1.5.1"
}
export -f floor_edit

echo "overlays: $N, rounds: $ROUNDS (median reported)"
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
: >"$WORK/results.txt"
for round in $(seq 1 "$ROUNDS"); do
  rm -rf "$WORK"/tool.git "$WORK"/floor.git "$WORK"/floor "$WORK"/tool-clone
  git clone -q --bare "$SEED" "$WORK/tool.git"
  git clone -q --bare "$SEED" "$WORK/floor.git"
  # The job as CI runs it: bare shallow clone in a temp dir, removed at exit.
  measure bump-manifest "$BIN" --repo "$WORK/tool.git" --branch main --image acmeiot/sensor-app \
      --new-tag 1.5.0 --new-digest "$NEW_D" --order-key 1 >>"$WORK/results.txt"
  measure floor-e2e bash -c floor_e2e >>"$WORK/results.txt"
  measure floor-edit-only bash -c floor_edit >>"$WORK/results.txt"
done
col() { awk -v l="$1" -v c="$2" '$1 == l { print $c }' "$WORK/results.txt" | median; }
tw=$(col bump-manifest 2); tr=$(col bump-manifest 3)
fw=$(col floor-e2e 2); fr=$(col floor-e2e 3)
ew=$(col floor-edit-only 2); er=$(col floor-edit-only 3)
changed=$(git -C "$WORK/tool.git" diff --name-only main~1 main | wc -l)
first="fleet/pi-$(printf "%0${#N}d" 1)/kustomization.yaml"
same=$(git -C "$WORK/floor.git" show "main~0:$first" | diff - <(git -C "$WORK/tool.git" show "main:$first") >/dev/null && echo yes || echo NO)
printf '%-18s %8s s  %8s KB peak RSS\n' bump-manifest "$tw" "$tr" floor-e2e "$fw" "$fr" floor-edit-only "$ew" "$er"
echo "files changed by bump-manifest: $changed (N overlays + state file); overlay bytes identical to sed's: $same"
awk -v t="$tw" -v f="$fw" -v e="$ew" 'BEGIN {
  printf "ratio vs floor (clone + sed -i + git commit -a + push): %.2fx\n", t/f
  printf "ratio vs sed -i + git commit -a alone:                  %.2fx\n", t/e }'
