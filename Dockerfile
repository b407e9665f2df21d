# holdfast: multi-stage build. Build with `docker build -t holdfast .`
FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
RUN cargo build --release --locked

FROM debian:bookworm-slim
# A fixed uid so that state and repository volumes keep their owner across upgrades.
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/holdfast holdfast \
    && mkdir -p /var/lib/holdfast/state /var/lib/holdfast/repository /specs \
    && chown -R holdfast:holdfast /var/lib/holdfast
COPY --from=build /src/target/release/holdfast /usr/local/bin/holdfast
COPY schemas /usr/share/holdfast/schemas
ENV HOLDFAST_SPECS=/specs \
    HOLDFAST_STATE=/var/lib/holdfast/state \
    HOLDFAST_REPOSITORY=/var/lib/holdfast/repository
# Non-root: give the container the Docker socket's group with --group-add.
USER holdfast
VOLUME ["/var/lib/holdfast"]
ENTRYPOINT ["holdfast"]
CMD ["validate"]
