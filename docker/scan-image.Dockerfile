# syntax=docker/dockerfile:1
# secdeliv scan-image job image. See docker/README.md.
#
# Two ways to get the binary (build argument BINARIES):
#   build     compile it here: Rust builder -> static musl binary (default; the
#             builder runs on the target platform, so a foreign platform needs
#             a native runner or emulation).
#   prebuilt  package binaries already built for both architectures, from
#             $BIN_DIR/x86_64-unknown-linux-musl/release/scan-image and
#             $BIN_DIR/aarch64-unknown-linux-musl/release/scan-image (cargo's layout):
#             nothing runs on the target platform, so
#               buildah build --platform linux/arm64,linux/amd64 --build-arg BINARIES=prebuilt ...
#             needs no emulation.
# Build from the workspace root:  buildah build -f docker/scan-image.Dockerfile .
ARG RUST_IMAGE=docker.io/library/rust:1.95-alpine
ARG HELPER_IMAGE=docker.io/library/alpine:3.22
ARG TRIVY_IMAGE=docker.io/aquasec/trivy:0.74.0
ARG BINARIES=build
ARG TARGETARCH

# --- the binary, compiled here -------------------------------------------------
FROM ${RUST_IMAGE} AS build
RUN apk add --no-cache musl-dev gcc g++ make cmake perl
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p scan-image \
 && install -D -m 0755 target/release/scan-image /out/scan-image

# --- the binary, prebuilt for each architecture --------------------------------
FROM scratch AS prebuilt-amd64
ARG BIN_DIR=target
COPY ${BIN_DIR}/x86_64-unknown-linux-musl/release/scan-image /out/scan-image

FROM scratch AS prebuilt-arm64
ARG BIN_DIR=target
COPY ${BIN_DIR}/aarch64-unknown-linux-musl/release/scan-image /out/scan-image

FROM prebuilt-${TARGETARCH} AS prebuilt

FROM ${BINARIES} AS bin

# --- a home for the non-root user, prepared on the build platform (no emulation)
FROM --platform=$BUILDPLATFORM ${HELPER_IMAGE} AS rootfs
RUN mkdir -p /rootfs/home/nonroot/.cache/trivy && chown -R 65532:65532 /rootfs/home/nonroot

# --- the image: trivy's official image (Alpine, has a shell and CA certificates)
FROM ${TRIVY_IMAGE}
COPY --from=rootfs /rootfs/home/nonroot /home/nonroot
COPY --from=bin /out/scan-image /usr/local/bin/scan-image
ENV HOME=/home/nonroot \
    TRIVY_CACHE_DIR=/home/nonroot/.cache/trivy \
    SCAN_TRIVY=/usr/local/bin/trivy
USER 65532:65532
WORKDIR /home/nonroot
ARG TRIVY_IMAGE
ARG VERSION=0.0.0-dev
ARG REVISION=unknown
ARG CREATED=1970-01-01T00:00:00Z
LABEL org.opencontainers.image.title="scan-image" \
      org.opencontainers.image.description="trivy image scan with GitLab container_scanning, SARIF, Code Quality, JUnit and CycloneDX reports and a gate" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="https://gitlab.com/secdeliv/secdeliv" \
      org.opencontainers.image.url="https://gitlab.com/secdeliv/secdeliv/-/tree/main/jobs/scan-image" \
      org.opencontainers.image.documentation="https://gitlab.com/secdeliv/secdeliv/-/blob/main/jobs/scan-image/README.md" \
      org.opencontainers.image.vendor="secdeliv" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${TRIVY_IMAGE}"
ENTRYPOINT ["/usr/local/bin/scan-image"]
CMD ["--help"]
