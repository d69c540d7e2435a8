# Multi-stage build: compile in the Rust image, run in a slim Debian as a non-root user.
#
#   docker build -t dcr-server .
#   docker run -d --name dcr -p 127.0.0.1:8243:8243 -v dcr-data:/app/data dcr-server
#
# serves the generated sandbox on the host's loopback port 8243 (`-p 8243:8243` would publish
# it on every host interface): config/container.toml listens on 0.0.0.0 inside the container
# and keeps the sandbox and the SQLite database on the data volume (/app/data; a named volume
# keeps them across `docker rm`). DCR_LISTEN, DCR_ISSUER and DCR_DATABASE_URL override its
# keys. For production, mount your config and PKI read-only, readable by uid 10001, and set
# DCR_CONFIG (config/production.toml, docs/deployment.md). Podman keeps the HEALTHCHECK only
# with `podman build --format docker`.
#
# The stages are named: CI (.ci/container.sh) builds `--target runtime` with the binary it has
# just compiled supplied as the `build` stage (`--build-context build=…`), so that what it runs
# is this file's runtime stage unchanged.
# A test runs the binary as ENTRYPOINT and CMD below do, with this ENV and WORKDIR, in a
# directory laid out as /app: keep them plain (one ENV per line, exec-form ENTRYPOINT/CMD).

FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
COPY migrations ./migrations
COPY docs/openapi.json docs/openapi-admin.json ./docs/
RUN cargo build --release --locked --bin dcr-server

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin dcr \
 && mkdir -p /app/config /app/data \
 && chown -R dcr:dcr /app
COPY --from=build /src/target/release/dcr-server /usr/local/bin/dcr-server
COPY --chown=dcr:dcr config/container.toml /app/config/container.toml
WORKDIR /app
ENV DCR_CONFIG=config/container.toml
ENV DCR_LOG_FORMAT=json
USER dcr
EXPOSE 8243
VOLUME ["/app/data"]
# -k: the health check talks to this container over loopback; the certificate is checked by
# real clients, not here.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD curl -fsSk https://127.0.0.1:8243/health || exit 1
ENTRYPOINT ["dcr-server"]
CMD ["serve"]
