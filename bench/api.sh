#!/usr/bin/env bash
# Load-tests the read-only HTTP API of `holdfast run` with wrk: GET /api/v1/policies (the
# default page of 100) with 1,000 policies loaded, on loopback, first with nothing else
# going on, then while a real backup of a Compose stack compresses a few hundred MB of
# random data with zstd -19. Prints requests/s, p99 latency and the daemon's RSS for both.
# Target: >= 5,000 req/s and p99 <= 20 ms while the backup runs. Run as root from the
# repository root:
#
#   bench/api.sh [--duration SECONDS] [--connections N] [--data-mb MB]
#
# Exits 0 when the measurement completed, whatever the verdict (it is printed); non-zero
# only when the setup failed.
set -euo pipefail

duration=15
connections=32
data_mb=400
while [[ $# -gt 0 ]]; do
    case "$1" in
        --duration) duration="$2"; shift 2 ;;
        --connections) connections="$2"; shift 2 ;;
        --data-mb) data_mb="$2"; shift 2 ;;
        *) echo "usage: $0 [--duration SECONDS] [--connections N] [--data-mb MB]" >&2; exit 2 ;;
    esac
done

# test-env.sh installs wrk along with Docker; it is quick when everything is there, but
# skipping it when both answer keeps the benchmark from touching apt at all.
if ! docker info >/dev/null 2>&1 || ! command -v wrk >/dev/null 2>&1; then
    scripts/test-env.sh >/dev/null
fi

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

python3 bench/api.py "$binary" "$project" "$work" "$duration" "$connections"
