#!/usr/bin/env bash
# scan-image benchmark: convert a ~100 MB trivy report (200,000 findings) to
# every output (GitLab, SARIF, Code Quality, JUnit, dotenv) beside the peer,
# `jq -c . REPORT > /dev/null`, in the same run. Prints wall time, peak RSS and
# the ratios. Needs jq and GNU time (Debian packages jq, time).
set -euo pipefail
cd "$(dirname "$0")/../.."
FINDINGS=${FINDINGS:-200000}
RUNS=${RUNS:-3}
out=bench/out/scan-image
mkdir -p "$out"
cargo build -q --release -p scan-image
bin=${CARGO_TARGET_DIR:-target}/release/scan-image
report="$out/trivy-$FINDINGS.json"
[ -s "$report" ] || python3 bench/scan-image/gen_report.py --findings "$FINDINGS" --out "$report"
size=$(stat -c %s "$report")

# measure CMD... → "seconds kilobytes"
measure() {
  /usr/bin/time -f '%e %M' -o "$out/time.txt" "$@" >/dev/null 2>"$out/stderr.txt" || true
  tail -n1 "$out/time.txt"
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

jq_t=(); jq_m=(); si_t=(); si_m=()
for _ in $(seq "$RUNS"); do
  read -r t m < <(measure jq -c . "$report")
  jq_t+=("$t"); jq_m+=("$m")
  read -r t m < <(measure "$bin" --trivy-report "$report" --fail-on none \
      --gitlab-report "$out/gl.json" --sarif "$out/out.sarif" --codequality "$out/cq.json" \
      --junit "$out/junit.xml" --dotenv "$out/scan.env")
  si_t+=("$t"); si_m+=("$m")
done
jt=$(printf '%s\n' "${jq_t[@]}" | median); jm=$(printf '%s\n' "${jq_m[@]}" | median)
st=$(printf '%s\n' "${si_t[@]}" | median); sm=$(printf '%s\n' "${si_m[@]}" | median)
findings=$(grep '^SCAN_TOTAL=' "$out/scan.env" | cut -d= -f2)
echo "input: $report, $((size / 1000000)) MB, $findings findings; median of $RUNS runs"
printf '%-46s %8s %12s\n' "command" "wall s" "peak RSS MB"
printf '%-46s %8s %12s\n' "jq -c . REPORT > /dev/null" "$jt" "$((jm / 1024))"
printf '%-46s %8s %12s\n' "scan-image (gitlab+sarif+codequality+junit)" "$st" "$((sm / 1024))"
awk -v st="$st" -v jt="$jt" -v sm="$sm" -v size="$size" 'BEGIN {
  printf "time ratio scan-image/jq: %.2f (target <= 1.0)\n", st / jt;
  printf "peak RSS / input size: %.2f (target < 2.0)\n", sm * 1024 / size }'
