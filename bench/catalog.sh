#!/usr/bin/env bash
# Counts the repository reads one successful run costs the daemon when the repository
# already holds 1,000 archives: `manifest.json` opens seen by strace between a
# requested-at edit and the run's end (retention and status included). The daemon keeps
# the catalog in memory, so a run should read the one manifest it wrote. Run as root
# from the repository root; Docker must be reachable (scripts/test-env.sh starts it).
#
#   bench/catalog.sh [BASELINE_BINARY]
#
# With a baseline binary (an older holdfast build), it is measured the same way in the
# same run, and both counts are printed.
set -euo pipefail
scripts/test-env.sh >/dev/null
command -v strace >/dev/null || apt-get install -y -q strace >/dev/null
echo "== building" >&2
cargo build --release --quiet --bin holdfast
exec python3 bench/catalog.py "${CARGO_TARGET_DIR:-target}/release/holdfast" "$@"
