# syntax=docker/dockerfile:1
# secdeliv job image for the jobs that need nothing but their binary and CA
# certificates: promote-image, sign-image, notify-argocd. The job is the build
# argument JOB (required). scan-image (trivy) and bump-manifest (git) have
# their own Dockerfiles. See docker/README.md.
#
# Two ways to get the binary (build argument BINARIES):
#   build     compile it here: Rust builder -> static musl binary (default; the
#             builder runs on the target platform, so a foreign platform needs
#             a native runner or emulation).
#   prebuilt  package binaries already built for both architectures, from
#             $BIN_DIR/x86_64-unknown-linux-musl/release/$JOB and
#             $BIN_DIR/aarch64-unknown-linux-musl/release/$JOB (cargo's layout):
#             nothing runs on the target platform, so
#               buildah build --platform linux/arm64,linux/amd64 --build-arg BINARIES=prebuilt ...
#             needs no emulation.
# Build from the workspace root:
#   buildah build --build-arg JOB=promote-image -f docker/job.Dockerfile .
ARG RUST_IMAGE=docker.io/library/rust:1.95-alpine
ARG HELPER_IMAGE=docker.io/library/alpine:3.22
ARG BASE=gcr.io/distroless/static-debian12:debug-nonroot
ARG BINARIES=build
ARG TARGETARCH
ARG JOB

# --- the binary, compiled here -------------------------------------------------
FROM ${RUST_IMAGE} AS build
ARG JOB
RUN apk add --no-cache musl-dev gcc g++ make cmake perl
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p ${JOB} \
 && install -D -m 0755 target/release/${JOB} /out/${JOB}

# --- the binary, prebuilt for each architecture --------------------------------
FROM scratch AS prebuilt-amd64
ARG BIN_DIR=target
ARG JOB
COPY ${BIN_DIR}/x86_64-unknown-linux-musl/release/${JOB} /out/${JOB}

FROM scratch AS prebuilt-arm64
ARG BIN_DIR=target
ARG JOB
COPY ${BIN_DIR}/aarch64-unknown-linux-musl/release/${JOB} /out/${JOB}

FROM prebuilt-${TARGETARCH} AS prebuilt

FROM ${BINARIES} AS bin

# --- files every image needs, prepared on the build platform (no emulation) ----
# CA certificates, a non-root user (65532, as distroless), a sticky /tmp.
FROM --platform=$BUILDPLATFORM ${HELPER_IMAGE} AS rootfs
ARG JOB
RUN case "${JOB}" in promote-image|sign-image|notify-argocd) ;; *) echo "job.Dockerfile: --build-arg JOB=promote-image|sign-image|notify-argocd is required (got '${JOB}')" >&2; exit 1 ;; esac \
 && apk add --no-cache ca-certificates \
 && mkdir -p /rootfs/etc/ssl/certs /rootfs/tmp /rootfs/home/nonroot \
 && cp /etc/ssl/certs/ca-certificates.crt /rootfs/etc/ssl/certs/ \
 && printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > /rootfs/etc/passwd \
 && printf 'root:x:0:\nnonroot:x:65532:\n' > /rootfs/etc/group \
 && chmod 1777 /rootfs/tmp && chown 65532:65532 /rootfs/home/nonroot \
 && mkdir -p /rootfs/usr/local/bin && ln -s "${JOB}" /rootfs/usr/local/bin/secdeliv-job

# --- the image -------------------------------------------------------------------
# BASE: the default distroless static image has busybox at /busybox (GitLab
# Runner finds /busybox/sh for job scripts); BASE=scratch gives the smallest
# image, for running the binary directly (Kubernetes Jobs, Argo CD hooks).
FROM ${BASE}
ARG JOB
COPY --from=rootfs /rootfs/ /
COPY --from=bin /out/${JOB} /usr/local/bin/${JOB}
ENV PATH=/usr/local/bin:/usr/bin:/bin:/busybox \
    HOME=/home/nonroot
USER 65532:65532
WORKDIR /home/nonroot
ARG VERSION=0.0.0-dev
ARG REVISION=unknown
ARG CREATED=1970-01-01T00:00:00Z
LABEL org.opencontainers.image.title="${JOB}" \
      org.opencontainers.image.description="secdeliv ${JOB}, a GitLab CI job binary (see the documentation URL)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="https://gitlab.com/secdeliv/secdeliv" \
      org.opencontainers.image.url="https://gitlab.com/secdeliv/secdeliv/-/tree/main/jobs/${JOB}" \
      org.opencontainers.image.documentation="https://gitlab.com/secdeliv/secdeliv/-/blob/main/jobs/${JOB}/README.md" \
      org.opencontainers.image.vendor="secdeliv" \
      org.opencontainers.image.licenses="Apache-2.0"
# An exec-form ENTRYPOINT cannot name ${JOB}: it is the symlink
# /usr/local/bin/secdeliv-job -> ${JOB} made in the rootfs stage.
ENTRYPOINT ["/usr/local/bin/secdeliv-job"]
CMD ["--help"]
