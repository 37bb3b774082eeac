# syntax=docker/dockerfile:1
# secdeliv promote-image job image. See docker/README.md.
#
# Two ways to get the binary (build argument BINARIES):
#   build     compile it here: Rust builder -> static musl binary (default; the
#             builder runs on the target platform, so a foreign platform needs
#             a native runner or emulation).
#   prebuilt  package binaries already built for both architectures, from
#             $BIN_DIR/x86_64-unknown-linux-musl/release/promote-image and
#             $BIN_DIR/aarch64-unknown-linux-musl/release/promote-image (cargo's layout):
#             nothing runs on the target platform, so
#               buildah build --platform linux/arm64,linux/amd64 --build-arg BINARIES=prebuilt ...
#             needs no emulation.
# Build from the workspace root:  buildah build -f docker/promote-image.Dockerfile .
ARG RUST_IMAGE=docker.io/library/rust:1.95-alpine
ARG HELPER_IMAGE=docker.io/library/alpine:3.22
ARG BASE=gcr.io/distroless/static-debian12:debug-nonroot
ARG BINARIES=build
ARG TARGETARCH

# --- the binary, compiled here -------------------------------------------------
FROM ${RUST_IMAGE} AS build
RUN apk add --no-cache musl-dev gcc g++ make cmake perl
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p promote-image \
 && install -D -m 0755 target/release/promote-image /out/promote-image

# --- the binary, prebuilt for each architecture --------------------------------
FROM scratch AS prebuilt-amd64
ARG BIN_DIR=target
COPY ${BIN_DIR}/x86_64-unknown-linux-musl/release/promote-image /out/promote-image

FROM scratch AS prebuilt-arm64
ARG BIN_DIR=target
COPY ${BIN_DIR}/aarch64-unknown-linux-musl/release/promote-image /out/promote-image

FROM prebuilt-${TARGETARCH} AS prebuilt

FROM ${BINARIES} AS bin

# --- files every image needs, prepared on the build platform (no emulation) ----
# CA certificates, a non-root user (65532, as distroless), a sticky /tmp.
FROM --platform=$BUILDPLATFORM ${HELPER_IMAGE} AS rootfs
RUN apk add --no-cache ca-certificates \
 && mkdir -p /rootfs/etc/ssl/certs /rootfs/tmp /rootfs/home/nonroot \
 && cp /etc/ssl/certs/ca-certificates.crt /rootfs/etc/ssl/certs/ \
 && printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > /rootfs/etc/passwd \
 && printf 'root:x:0:\nnonroot:x:65532:\n' > /rootfs/etc/group \
 && chmod 1777 /rootfs/tmp && chown 65532:65532 /rootfs/home/nonroot

# --- the image -------------------------------------------------------------------
# BASE: the default distroless static image has busybox at /busybox (GitLab
# Runner finds /busybox/sh for job scripts); BASE=scratch gives the smallest
# image, for running the binary directly (Kubernetes Jobs, Argo CD hooks).
FROM ${BASE}
COPY --from=rootfs /rootfs/ /
COPY --from=bin /out/promote-image /usr/local/bin/promote-image
ENV PATH=/usr/local/bin:/usr/bin:/bin:/busybox \
    HOME=/home/nonroot
USER 65532:65532
WORKDIR /home/nonroot
ARG VERSION=0.0.0-dev
ARG REVISION=unknown
ARG CREATED=1970-01-01T00:00:00Z
LABEL org.opencontainers.image.title="promote-image" \
      org.opencontainers.image.description="Copy an image digest byte for byte between registries" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="https://gitlab.com/secdeliv/secdeliv" \
      org.opencontainers.image.url="https://gitlab.com/secdeliv/secdeliv/-/tree/main/jobs/promote-image" \
      org.opencontainers.image.documentation="https://gitlab.com/secdeliv/secdeliv/-/blob/main/jobs/promote-image/README.md" \
      org.opencontainers.image.vendor="secdeliv" \
      org.opencontainers.image.licenses="Apache-2.0"
ENTRYPOINT ["/usr/local/bin/promote-image"]
CMD ["--help"]
