# syntax=docker/dockerfile:1
#
# invitegate as a container: a static musl binary on a distroless base, run as a non-root user.
#
#   docker build -t invitegate .
#   docker run --rm -p 8080:8080 --env-file invitegate.env \
#       -v "$PWD/keys.txt:/run/secrets/invitegate-keys:ro" invitegate
#
# The README's "Container image" section says what goes in the env file and how to mount keys.

ARG RUST_VERSION=1.88

# ---- build: the whole compile happens here, so the host needs no Rust toolchain.
FROM docker.io/library/rust:${RUST_VERSION}-alpine AS build
ARG TARGET=x86_64-unknown-linux-musl
# musl-dev: C runtime headers for crates that compile C or assembly (ring, for the JWKS fetch).
RUN apk add --no-cache musl-dev && rustup target add "$TARGET"
WORKDIR /src
# Only what the build reads. Cargo.toml names the benches, so their sources must be present.
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
# The registry and target caches persist between builds where BuildKit or Buildah provide them;
# the binary is copied out of the cached target directory inside the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --profile dist --locked --bin invitegate --target "$TARGET" \
    && cp "target/$TARGET/dist/invitegate" /invitegate
# Fail the build, not the deployment, if the binary is not static.
RUN if readelf -l /invitegate | grep -q INTERP; then \
        echo "invitegate is dynamically linked; the runtime image has no libc" >&2; exit 1; \
    fi

# ---- runtime: no shell, no package manager; CA certificates for fetching the Entra JWKS.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /invitegate /usr/local/bin/invitegate
# The distroless "nonroot" user, by number so that platforms can check runAsNonRoot.
USER 65532:65532
# The address as a setting, not a flag: a command given at `docker run`, and `healthcheck`
# (which asks where `serve` listens with the same environment), see it too.
ENV INVITEGATE_LISTEN=0.0.0.0:8080
EXPOSE 8080
# The binary probes itself: the image has no shell or curl.
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/invitegate", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/invitegate"]
CMD ["serve", "--log-format", "json"]
