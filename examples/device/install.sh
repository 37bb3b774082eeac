#!/bin/sh
# Installs secdeliv-verifier on a K3s node (Raspberry Pi, arm64) as containerd's
# image verifier. No daemon: containerd starts the verifier for each pull.
#
#   sudo sh install.sh ./secdeliv-verifier ./cosign.pub
#
# The binary is the static aarch64 build (scripts/build-musl.sh). Needs K3s
# >= 1.35.3 (containerd 2.2, config-v3.toml.tmpl); older K3s: keep the Argo CD
# PreSync hook (examples/config-repo/README.md).
set -eu
bin=${1:?usage: install.sh SECDELIV_VERIFIER COSIGN_PUB}
key=${2:?usage: install.sh SECDELIV_VERIFIER COSIGN_PUB}
here=$(dirname "$0")
k3s_etc=/var/lib/rancher/k3s/agent/etc/containerd

[ "$(id -u)" = 0 ] || { echo "install.sh: run as root" >&2; exit 2; }
"$bin" --version >/dev/null || { echo "install.sh: $bin does not run on this machine (wrong architecture?)" >&2; exit 2; }

# The policy and its keys: root's only.
install -d -m 0755 /etc/secdeliv
install -d -m 0755 /etc/secdeliv/keys
install -m 0644 "$key" /etc/secdeliv/keys/cosign.pub
[ -e /etc/secdeliv/verify.yaml ] || install -m 0644 "$here/verify.yaml" /etc/secdeliv/verify.yaml
# The cache directory: root's, 0700 (an entry allows an image).
install -d -m 0700 /var/lib/secdeliv

# The verifier: the only file in bin_dir (containerd runs every file there).
install -d -m 0755 /opt/secdeliv/image-verifier/bin
install -m 0755 "$bin" /opt/secdeliv/image-verifier/bin/secdeliv-verifier

# Enable the plugin: K3s renders config.toml from config-v3.toml.tmpl.
install -d -m 0755 "$k3s_etc"
if [ -e "$k3s_etc/config-v3.toml.tmpl" ] && ! grep -q image-verifier "$k3s_etc/config-v3.toml.tmpl"; then
  echo "install.sh: $k3s_etc/config-v3.toml.tmpl exists; add the [plugins.\"io.containerd.image-verifier.v1.bindir\"] section from $here/config-v3.toml.tmpl yourself" >&2
  exit 2
fi
install -m 0644 "$here/config-v3.toml.tmpl" "$k3s_etc/config-v3.toml.tmpl"

# Check the policy before restarting: an image outside every scope must be answered.
echo '{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":1}' |
  /opt/secdeliv/image-verifier/bin/secdeliv-verifier -name docker.io/rancher/mirrored-pause:3.6 \
    -digest sha256:0000000000000000000000000000000000000000000000000000000000000000 \
    -stdin-media-type application/vnd.oci.descriptor.v1+json --cache none

systemctl restart k3s 2>/dev/null || systemctl restart k3s-agent
echo "install.sh: done; a refused pull shows 'image verifier bindir blocked pull … reason: verifier secdeliv-verifier rejected image' in the pod's events"
