#!/usr/bin/env bash
# Measures the reconciler with 1,000 policies in 100 files (schedules far in the future,
# so no Docker work): start-up until every status file is written, edit-to-status
# latency over 50 edits, and RSS and CPU time after 60 s idle. Run as root from the
# repository root; Docker must be reachable (scripts/test-env.sh starts it).
#
#   bench/reconcile.sh [--idle SECONDS]
set -euo pipefail
idle=60
while [[ $# -gt 0 ]]; do
    case "$1" in
        --idle) idle="$2"; shift 2 ;;
        *) echo "usage: $0 [--idle SECONDS]" >&2; exit 2 ;;
    esac
done
scripts/test-env.sh >/dev/null
echo "== building" >&2
cargo build --release --quiet --bin holdfast
exec python3 bench/reconcile.py "${CARGO_TARGET_DIR:-target}/release/holdfast" "$idle"
