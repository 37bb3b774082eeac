#!/usr/bin/env bash
# Regenerates rootfs/ from real Debian 12 (bookworm) packages: the dpkg
# status of the pinned versions below, written from each package's own
# control data, and the release files of base-files. Only metadata goes in
# (no libraries): what a scanner reads to know what is installed.
#
#   bash examples/debian-base/make-rootfs.sh     # needs apt sources for bookworm
#
# The versions are bookworm's point-release ones; bookworm-security has since
# fixed CVEs in zlib and openssl (see tests/peers/trivy-db/advisories.json),
# which is the point: the image is a realistic, unpatched Debian root.
set -euo pipefail
cd "$(dirname "$0")"
PKGS=(
  "base-files=12.4+deb12u15"
  "zlib1g=1:1.2.13.dfsg-1"
  "libssl3=3.0.20-1~deb12u2"
  "openssl=3.0.20-1~deb12u2"
)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && apt-get download -q "${PKGS[@]}" >/dev/null 2>&1)
rm -rf rootfs
mkdir -p rootfs/etc rootfs/var/lib/dpkg
status=rootfs/var/lib/dpkg/status
: >"$status"
for deb in "$tmp"/*.deb; do
  # A status stanza is the control stanza with Status after Package.
  dpkg-deb -f "$deb" | awk 'NR==1{print; print "Status: install ok installed"; next} {print}' >>"$status"
  echo >>"$status"
done
base=$(ls "$tmp"/base-files_*.deb)
dpkg-deb -x "$base" "$tmp/base"
cp "$tmp/base/etc/debian_version" rootfs/etc/debian_version
cp "$tmp/base/usr/lib/os-release" rootfs/etc/os-release
echo "rootfs: $(grep -c '^Package:' "$status") packages in $status; $(cat rootfs/etc/debian_version) ($(. rootfs/etc/os-release; echo "$PRETTY_NAME"))"
