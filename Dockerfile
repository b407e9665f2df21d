# holdfast: multi-stage build. Build with `docker build -t holdfast .`
FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
RUN cargo build --release --locked

FROM debian:bookworm-slim
# ssh for SFTP repositories; tini as PID 1, because ssh's connection master detaches
# and, when it ends, must be reaped by PID 1 (holdfast reaps only its own children).
RUN apt-get update \
    && apt-get install -y --no-install-recommends openssh-client tini \
    && rm -rf /var/lib/apt/lists/*
# A fixed uid so that state and repository volumes keep their owner across upgrades.
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/holdfast holdfast \
    && mkdir -p /var/lib/holdfast/state /var/lib/holdfast/repository /specs \
    && chown -R holdfast:holdfast /var/lib/holdfast
COPY --from=build /src/target/release/holdfast /usr/local/bin/holdfast
COPY schemas /usr/share/holdfast/schemas
ENV HOLDFAST_SPECS=/specs \
    HOLDFAST_STATE=/var/lib/holdfast/state \
    HOLDFAST_REPOSITORY=/var/lib/holdfast/repository
# The API listens on loopback unless told otherwise; to reach it from outside the
# container, set HOLDFAST_LISTEN=0.0.0.0:9750 and HOLDFAST_API_TOKEN_FILE (a mounted
# file with the bearer token): off loopback, holdfast refuses to start without one.
EXPOSE 9750
# Non-root: give the container the Docker socket's group with --group-add.
USER holdfast
VOLUME ["/var/lib/holdfast"]
ENTRYPOINT ["/usr/bin/tini", "--", "holdfast"]
CMD ["validate"]
