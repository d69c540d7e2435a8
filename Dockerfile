# Multi-stage build: compile in the Rust image, run in a slim Debian as a non-root user.
#
#   docker build -t dcr-server .
#   docker run -p 8243:8243 \
#     -v $PWD/config:/app/config:ro -v $PWD/certs:/app/certs:ro -v dcr-data:/app/data \
#     dcr-server
#
# Mount config/deployment.toml and the files it names (paths are relative to /app). The
# shipped config listens on 127.0.0.1; in a container set `listen = "0.0.0.0:8243"`.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
COPY migrations ./migrations
COPY docs/openapi.json ./docs/openapi.json
RUN cargo build --release --locked --bin dcr-server

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin dcr \
 && mkdir -p /app/config /app/certs /app/data \
 && chown -R dcr:dcr /app
COPY --from=build /src/target/release/dcr-server /usr/local/bin/dcr-server
COPY --chown=dcr:dcr config/deployment.toml /app/config/deployment.toml
WORKDIR /app
USER dcr
EXPOSE 8243
VOLUME ["/app/data"]
# -k: the health check talks to this container over loopback; the certificate is checked by
# real clients, not here.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD curl -fsSk https://127.0.0.1:8243/health || exit 1
ENTRYPOINT ["dcr-server"]
CMD ["serve", "--config", "config/deployment.toml"]
