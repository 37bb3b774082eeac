#!/bin/sh
# prune-libs.sh ROOT: removes from the root file system ROOT every shared
# library that no ELF file left in ROOT needs (DT_NEEDED, transitively), then
# the symlinks left dangling. bump-manifest's image uses it to drop libcurl,
# OpenSSL and the rest of git-remote-http(s)'s closure once those helpers are
# deleted (the job does git's HTTP itself). Needs scanelf (pax-utils) when
# ROOT holds any library. The dynamic loader and libc are always kept.
set -eu
root=${1:?usage: prune-libs.sh ROOT}
libs() { find "$root" -type f -name '*.so*'; }
[ -n "$(libs)" ] || exit 0
while :; do
  needed=" $(scanelf -BRF '%n' "$root" | awk '{print $1}' | tr ',\n' '  ') "
  pruned=0
  for f in $(libs); do
    soname=$(scanelf -BF '%S' "$f" | awk 'NF == 2 {print $1}')
    [ -n "$soname" ] || continue
    case "$soname" in ld-*|libc.musl-*|libc.so.*) continue ;; esac
    case "$needed" in
      *" $soname "*) ;;
      *) rm -f "$f"; echo "prune-libs: removed $soname (${f#"$root"})"; pruned=1 ;;
    esac
  done
  [ "$pruned" = 1 ] || break
done
for l in $(find "$root" -type l); do [ -e "$l" ] || rm -f "$l"; done
