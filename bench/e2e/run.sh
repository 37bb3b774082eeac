#!/usr/bin/env bash
# End-to-end wall time split by stage: runs the demo (the sensor-app pipeline
# under gitlab-ci-local with the release job binaries, local registries, git
# server and Argo CD simulator) RUNS times and prints each job's median.
# Usage: bash bench/e2e/run.sh [RUNS]   (default 5)
set -euo pipefail
cd "$(dirname "$0")/../.."
runs="${1:-5}"
bash scripts/install-deps.sh >/dev/null
cargo build --quiet --release --workspace --bins --locked
cargo build --quiet --workspace --bins --locked
bash scripts/build-sensor-app.sh >/dev/null
export SECDELIV_BIN_DIR="$PWD/target/release"
out=$(mktemp -d)
for i in $(seq 1 "$runs"); do
  target/debug/demo > "$out/run-$i.log" 2>&1 || { echo "run $i failed:"; tail -40 "$out/run-$i.log"; exit 1; }
  sed -n '/== wall time by job/,/== the flow/p' "$out/run-$i.log" | awk 'NF==3 && $3=="s" {print $1, $2}' >> "$out/times"
done
echo "job binaries: $SECDELIV_BIN_DIR (release); $runs runs; $(nproc) cores"
printf '%-16s %8s %8s %8s\n' job median min max
for job in build-image scan-image promote-image sign-image bump-manifest notify-argocd pipeline; do
  awk -v j="$job" '$1==j {print $2}' "$out/times" | sort -n | awk -v j="$job" '
    {v[NR]=$1} END { if (NR==0) exit; m = (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2;
      printf "%-16s %7.2fs %7.2fs %7.2fs\n", j, m, v[1], v[NR] }'
done
rm -rf "$out"
