# holdfast: multi-stage build. Build with `docker build -t holdfast .`
# Without a registry, `make image` (scripts/image.sh) assembles the same runtime
# image from this machine's files; it reads this stage's ENV, EXPOSE, USER,
# VOLUME, ENTRYPOINT, CMD, WORKDIR and LABEL lines, so keep their values literal.
FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
# The dashboard's files are compiled into the binary.
COPY ui ./ui
RUN cargo build --release --locked

FROM debian:bookworm-slim
# ssh for SFTP repositories; tini as PID 1, because ssh's connection master detaches
# and, when it ends, must be reaped by PID 1 (holdfast reaps only its own children);
# CA certificates for S3 repositories and notifications over TLS.
RUN apt-get update \
    && apt-get install -y --no-install-recommends openssh-client tini ca-certificates \
    && rm -rf /var/lib/apt/lists/*
# A fixed uid and gid so that state and repository volumes keep their owner across
# upgrades (`useradd --user-group --system` would pick a gid of its own).
RUN groupadd --system --gid 10001 holdfast \
    && useradd --system --uid 10001 --gid holdfast --home-dir /var/lib/holdfast \
        --no-create-home --shell /usr/sbin/nologin holdfast \
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
# Non-root: give the container the Docker socket's group with --group-add, and read
# volumes through Docker's API (HOLDFAST_ARCHIVE_VIA=api), since files private to other
# users are out of reach; restores write volumes with their owners and need --user 0:0
# (README, "Container image").
USER holdfast
VOLUME ["/var/lib/holdfast"]
LABEL org.opencontainers.image.title="holdfast" \
    org.opencontainers.image.description="Declarative backups for Docker hosts" \
    org.opencontainers.image.licenses="Apache-2.0"
ENTRYPOINT ["/usr/bin/tini", "--", "holdfast"]
CMD ["validate"]
