# syntax=docker/dockerfile:1
# secdeliv bump-manifest job image. See docker/README.md.
#
# Two ways to get the binary (build argument BINARIES):
#   build     compile it here: Rust builder -> static musl binary (default; the
#             builder runs on the target platform, so a foreign platform needs
#             a native runner or emulation).
#   prebuilt  package binaries already built for both architectures, from
#             $BIN_DIR/x86_64-unknown-linux-musl/release/bump-manifest and
#             $BIN_DIR/aarch64-unknown-linux-musl/release/bump-manifest (cargo's layout):
#             nothing runs on the target platform, so
#               buildah build --platform linux/arm64,linux/amd64 --build-arg BINARIES=prebuilt ...
#             needs no emulation.
# Build from the workspace root:  buildah build -f docker/bump-manifest.Dockerfile .
ARG RUST_IMAGE=docker.io/library/rust:1.95-alpine
ARG HELPER_IMAGE=docker.io/library/alpine:3.22
ARG BINARIES=build
ARG TARGETARCH

# --- the binary, compiled here -------------------------------------------------
FROM ${RUST_IMAGE} AS build
RUN apk add --no-cache musl-dev gcc g++ make cmake perl
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p bump-manifest -p git-remote \
 && install -D -m 0755 target/release/bump-manifest /out/bump-manifest \
 && install -D -m 0755 target/release/git-remote-secdeliv /out/git-remote-secdeliv

# --- the binary, prebuilt for each architecture --------------------------------
FROM scratch AS prebuilt-amd64
ARG BIN_DIR=target
COPY ${BIN_DIR}/x86_64-unknown-linux-musl/release/bump-manifest /out/bump-manifest
COPY ${BIN_DIR}/x86_64-unknown-linux-musl/release/git-remote-secdeliv /out/git-remote-secdeliv

FROM scratch AS prebuilt-arm64
ARG BIN_DIR=target
COPY ${BIN_DIR}/aarch64-unknown-linux-musl/release/bump-manifest /out/bump-manifest
COPY ${BIN_DIR}/aarch64-unknown-linux-musl/release/git-remote-secdeliv /out/git-remote-secdeliv

FROM prebuilt-${TARGETARCH} AS prebuilt

FROM ${BINARIES} AS bin

# --- git and a shell for the target architecture, installed from the build
# platform with apk --arch (no emulation); scripts are not run.
FROM --platform=$BUILDPLATFORM ${HELPER_IMAGE} AS rootfs
ARG TARGETARCH
# git's own HTTP helpers are deleted below: bump-manifest speaks git's smart
# HTTP itself (BUMP_MANIFEST_GIT_TRANSPORT=builtin, rustls), so git core is
# enough, and prune-libs.sh drops what only they needed (libcurl, OpenSSL,
# nghttp2, idn2, ...): no OpenSSL in the image.
COPY docker/prune-libs.sh /prune-libs.sh
RUN case "${TARGETARCH}" in amd64) arch=x86_64 ;; arm64) arch=aarch64 ;; *) echo "unsupported TARGETARCH ${TARGETARCH}" >&2; exit 1 ;; esac \
 && apk add --no-cache alpine-keys \
 && mkdir -p /rootfs/etc/apk/keys \
 && cp /usr/share/apk/keys/${arch}/*.pub /rootfs/etc/apk/keys/ \
 && cp /etc/apk/repositories /rootfs/etc/apk/repositories \
 && apk add --root /rootfs --arch "${arch}" --initdb --no-cache --no-scripts \
        alpine-baselayout-data busybox musl ca-certificates-bundle git \
 && for a in sh cat sed printf echo mkdir rm ls env test; do ln -sf busybox "/rootfs/bin/$a"; done \
 && cd /rootfs/usr/libexec/git-core \
 && rm -f git-daemon git-shell git-imap-send git-http-backend git-http-push git-http-fetch scalar \
        git-remote-http git-remote-https git-remote-ftp git-remote-ftps \
 && apk add --no-cache pax-utils \
 && sh /prune-libs.sh /rootfs \
 && rm -rf /rootfs/usr/share/git-core/templates/hooks /rootfs/usr/share/man /rootfs/usr/share/doc \
        /rootfs/var/cache/apk /rootfs/lib/apk /rootfs/etc/apk \
 && mkdir -p /rootfs/tmp /rootfs/home/nonroot \
 && printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/bin/sh\n' > /rootfs/etc/passwd \
 && printf 'root:x:0:\nnonroot:x:65532:\n' > /rootfs/etc/group \
 && chmod 1777 /rootfs/tmp && chown 65532:65532 /rootfs/home/nonroot

# --- the image -------------------------------------------------------------------
FROM scratch
COPY --from=rootfs /rootfs/ /
COPY --from=bin /out/bump-manifest /usr/local/bin/bump-manifest
# The built-in git transport (jobs/git-remote), found next to bump-manifest.
COPY --from=bin /out/git-remote-secdeliv /usr/local/bin/git-remote-secdeliv
ENV PATH=/usr/local/bin:/usr/bin:/bin \
    HOME=/home/nonroot \
    GIT_TERMINAL_PROMPT=0 \
    BUMP_MANIFEST_GIT_TRANSPORT=builtin
USER 65532:65532
WORKDIR /home/nonroot
ARG VERSION=0.0.0-dev
ARG REVISION=unknown
ARG CREATED=1970-01-01T00:00:00Z
LABEL org.opencontainers.image.title="bump-manifest" \
      org.opencontainers.image.description="Write name:tag@digest into a GitOps config repo, format-preserving" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="https://gitlab.com/secdeliv/secdeliv" \
      org.opencontainers.image.url="https://gitlab.com/secdeliv/secdeliv/-/tree/main/jobs/bump-manifest" \
      org.opencontainers.image.documentation="https://gitlab.com/secdeliv/secdeliv/-/blob/main/jobs/bump-manifest/README.md" \
      org.opencontainers.image.vendor="secdeliv" \
      org.opencontainers.image.licenses="Apache-2.0"
ENTRYPOINT ["/usr/local/bin/bump-manifest"]
CMD ["--help"]
