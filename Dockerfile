# syntax=docker/dockerfile:1
#
# The capactor binary in a small image that runs as a non-root user:
#
#   docker build -t capactor:0.1.0 .
#   docker run --rm capactor:0.1.0 --help
#
# Build stage: the Rust toolchain on Debian 12, the release binary without
# debug info. Runtime stage: distroless `cc` (glibc and libgcc, no shell, no
# package manager), user 65532 ("nonroot"). TLS is rustls: no OpenSSL.

ARG RUST_VERSION=1.95
FROM rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /src
# BuildKit's cache mounts keep the registry and the target directory
# between builds, so a change to the sources rebuilds only capactor.
COPY . .
ENV CARGO_PROFILE_RELEASE_DEBUG=0 \
    CARGO_PROFILE_RELEASE_STRIP=symbols
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin capactor \
 && install -D -m 0755 target/release/capactor /out/capactor

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/capactor /usr/local/bin/capactor
USER 65532:65532
# 7001: a worker's RPC port (7000 for a registry); 9090: --metrics.
EXPOSE 7000 7001 9090
ENTRYPOINT ["capactor"]
CMD ["--help"]
