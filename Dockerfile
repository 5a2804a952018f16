# oidc-bff container image: a release build on Debian 12, run on distroless
# (glibc, CA certificates, no shell) as the unprivileged user 65532.
#
#   docker build -t oidc-bff:0.1.0 .
#   docker run --read-only -p 8080:8080 -p 9090:9090 \
#     -v "$PWD/config/oidc-bff.toml:/etc/oidc-bff/oidc-bff.toml:ro" oidc-bff:0.1.0
#
# The gateway writes nothing to disk, so a read-only root filesystem works.
# No HEALTHCHECK: orchestrators probe GET /healthz and /readyz on the admin
# port (9090) themselves.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# `--no-default-features`: the production binary leaves out the development
# parts (`demo`, `dev-idp`, the echo API).
# Cache mounts keep the registry and the build directory between builds;
# the binary is copied out of the cached target directory.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --no-default-features --bin oidc-bff \
    && cp target/release/oidc-bff /usr/local/bin/oidc-bff

# Same Debian release as the build stage, so the same glibc.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /usr/local/bin/oidc-bff /usr/local/bin/oidc-bff
USER 65532:65532
ENV OIDC_BFF_CONFIG=/etc/oidc-bff/oidc-bff.toml
# 8080: the gateway (server.listen); 9090: health and metrics (server.admin_listen).
# Both must listen on 0.0.0.0 in the config to be reachable from outside.
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/oidc-bff"]
CMD ["serve"]
