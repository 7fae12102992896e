# One image for every role (mpc router | coordinator | party). Native parties
# use the GMP big-integer backend (about 2x faster than pure Rust; it
# interoperates with num-bigint parties such as browsers).
FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends m4 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release -p mpc --no-default-features --features backend-gmp \
    && cp target/release/mpc /usr/local/bin/mpc

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home /nonexistent mpc
COPY --from=build /usr/local/bin/mpc /usr/local/bin/mpc
USER mpc
ENTRYPOINT ["/usr/local/bin/mpc"]
