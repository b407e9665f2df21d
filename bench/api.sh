#!/usr/bin/env bash
# Load-tests the read-only HTTP API of `holdfast run`: GET /api/v1/policies (the default
# page of 100) with 1,000 policies loaded, on loopback, first with nothing else going on,
# then while a real backup of a Compose stack compresses a few hundred MB of random data
# with zstd -19. Each time it runs two loads, one after the other:
#
# - oha at a fixed rate (5,000 requests/s) with its latency correction, so that a stall
#   counts for every request that should have been sent during it (no coordinated
#   omission). Prints the rate asked and achieved, p50, p99 and p99.9, errors, the daemon's
#   RSS and the verdict against the target: p99 <= 20 ms, idle and during the backup.
# - wrk as fast as the daemon answers: requests/s and p99 at saturation, the headroom.
#
# Run as root from the repository root (installs oha with cargo if missing):
#
#   bench/api.sh [--duration SECONDS] [--connections N] [--rate REQUESTS_PER_S] [--data-mb MB]
#
# Exits 0 when the measurement completed, whatever the verdict (it is printed); non-zero
# only when the setup failed.
set -euo pipefail

duration=15
connections=32
rate=5000
data_mb=400
while [[ $# -gt 0 ]]; do
    case "$1" in
        --duration) duration="$2"; shift 2 ;;
        --connections) connections="$2"; shift 2 ;;
        --rate) rate="$2"; shift 2 ;;
        --data-mb) data_mb="$2"; shift 2 ;;
        *) echo "usage: $0 [--duration SECONDS] [--connections N] [--rate REQUESTS_PER_S] [--data-mb MB]" >&2; exit 2 ;;
    esac
done

# test-env.sh installs wrk along with Docker; it is quick when everything is there, but
# skipping it when both answer keeps the benchmark from touching apt at all.
if ! docker info >/dev/null 2>&1 || ! command -v wrk >/dev/null 2>&1; then
    scripts/test-env.sh >/dev/null
fi
# shellcheck source=bench/lib.sh
source bench/lib.sh
need_cargo_tool oha 1.16.0

echo "== building" >&2
cargo build --release --locked --quiet --bin holdfast
binary="${CARGO_TARGET_DIR:-target}/release/holdfast"

# A project name of our own, so that the demo stack of `make run` or of the tests is left
# alone; compose v1 names the containers <project>_<service>_1.
project="holdfast-apibench-$$"
compose_file=examples/compose/demo/docker-compose.yml
compose() { docker-compose -p "$project" -f "$compose_file" "$@"; }

work=$(mktemp -d "${TMPDIR:-/tmp}/holdfast-api.XXXXXX")
cleanup() {
    compose down -v --remove-orphans >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

echo "== starting the demo stack as $project" >&2
compose up -d >/dev/null 2>&1 || { compose logs --tail=30 >&2; exit 1; }
# Every service healthy (or without a healthcheck) before measuring: a database still
# initialising would take CPU away from the idle baseline.
want=$(compose config --services | wc -l)
deadline=$((SECONDS + 120))
while :; do
    # shellcheck disable=SC2046 # one argument per container id
    states=$(docker inspect -f '{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' $(compose ps -q))
    if (($(grep -c . <<<"$states") == want)) && ! grep -qvE '^running (healthy|none)$' <<<"$states"; then
        break
    fi
    if grep -qE '^(exited|dead) ' <<<"$states" || ((SECONDS >= deadline)); then
        echo "the demo stack did not become healthy:" >&2
        compose ps >&2 || true
        compose logs --tail=30 >&2 || true
        exit 1
    fi
    sleep 1
done

# Random bytes do not compress, so zstd -19 spends its full effort on every byte: the
# backup keeps the CPU busy for minutes. The web service mounts the web-data volume at /www.
web=$(compose ps -q web)
echo "== writing $data_mb MB of random data into the web-data volume" >&2
docker exec "$web" sh -c "head -c $((data_mb * 1000000)) /dev/urandom > /www/big.bin"

python3 bench/api.py "$binary" "$project" "$work" "$duration" "$connections" "$rate"
