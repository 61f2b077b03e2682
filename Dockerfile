# syntax=docker/dockerfile:1
#
# warden as one static (musl) binary on distroless: no shell, no package manager, runs as
# the nonroot user. The same image runs the sidecar (`run`, the default command),
# `inject` and `webhook`:
#   docker build -t warden .
#   docker run --rm -i warden inject < app.yaml
#
# Multi-arch: `docker buildx build --platform linux/amd64,linux/arm64 .` builds each
# architecture natively (under emulation where needed) for its musl target.

FROM rust:1-bookworm AS build
ARG TARGETARCH
# musl-tools: ring compiles C and assembly for the musl target with musl-gcc.
RUN apt-get update \
    && apt-get install -y --no-install-recommends musl-tools \
    && rm -rf /var/lib/apt/lists/*
RUN case "${TARGETARCH:-amd64}" in \
        amd64) echo x86_64-unknown-linux-musl ;; \
        arm64) echo aarch64-unknown-linux-musl ;; \
        *) echo "unsupported architecture: ${TARGETARCH}" >&2; exit 1 ;; \
    esac > /rust-target \
    && rustup target add "$(cat /rust-target)"
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY src src
COPY crates crates
# The build context has no .git: `warden --version` names this commit when it is passed,
#   docker build --build-arg WARDEN_GIT_COMMIT=$(git rev-parse --short=12 HEAD) -t warden .
# and says `unknown` otherwise.
ARG WARDEN_GIT_COMMIT=""
ENV WARDEN_GIT_COMMIT=${WARDEN_GIT_COMMIT}
# The cache mounts keep the registry and build artefacts between builds; the binary is
# copied out in the same step because the target directory is not part of the layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin warden --target "$(cat /rust-target)" \
    && install -D -m 0755 "target/$(cat /rust-target)/release/warden" /out/warden

# static-debian12 carries the CA bundle (/etc/ssl/certs) that warden's TLS client reads
# for upstreams, and /etc/passwd with the nonroot user (65532).
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/warden /warden
USER 65532:65532
# The admin listener (probes, /metrics) when proxy.yaml says admin.listen: 0.0.0.0:9901.
EXPOSE 9901
ENTRYPOINT ["/warden"]
CMD ["run", "--config", "/etc/warden/proxy.yaml"]
