# One image for every role (mpc router | coordinator | party). Native parties
# use the GMP big-integer backend (about 2x faster than pure Rust; it
# interoperates with num-bigint parties such as browsers).
FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends m4 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release -p mpc --no-default-features --features backend-gmp \
    && cp target/release/mpc /usr/local/bin/mpc

# TLS (docs/operations.md, "TLS"): no certificate is baked into the image.
# Give each container its own certificate, key and the deployment's CA as
# read-only files (bind mounts or Docker secrets, docker-compose.yml mounts
# them at /etc/mpc/tls/) and point MPC_TLS_CERT, MPC_TLS_KEY, MPC_TLS_CA at
# them. ca-certificates stays for curl; mpc itself trusts --tls-ca or the
# Mozilla roots compiled in.
FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home /nonexistent mpc
COPY --from=build /usr/local/bin/mpc /usr/local/bin/mpc
USER mpc
ENTRYPOINT ["/usr/local/bin/mpc"]
