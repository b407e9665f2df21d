#!/usr/bin/env bash
# Times the dashboard's overview with 1,000 policies in a real browser (Debian's chromium
# through chromium-driver, tests/browser/dashboard.py), against a release build of
# `holdfast run` on loopback, and weighs the page's assets. Each load starts with an
# empty cache in a browser already running; the time is the browser's own Performance
# API: navigation start to the `holdfast:overview-rendered` mark, set once the 1,000
# rows are in the page. Targets: <= 300 ms, and the assets <= 200 KiB gzipped. Run from
# the repository root:
#
#   bench/dashboard.sh [--loads N] [--policies N]
#
# Exits 0 when the measurement completed, whatever the verdict (it is printed); non-zero
# only when the setup failed.
set -euo pipefail
source bench/lib.sh

loads=10
policies=1000
while [[ $# -gt 0 ]]; do
    case "$1" in
        --loads) loads="$2"; shift 2 ;;
        --policies) policies="$2"; shift 2 ;;
        *) echo "usage: $0 [--loads N] [--policies N]" >&2; exit 2 ;;
    esac
done

need_pkg chromium chromium
need_pkg chromedriver chromium-driver
/usr/bin/python3 -c 'import selenium' 2>/dev/null || need_pkg __selenium__ python3-selenium
need_pkg curl curl

echo "== building" >&2
cargo build --release --locked --quiet --bin holdfast
binary="${CARGO_TARGET_DIR:-target}/release/holdfast"

work=$(mktemp -d "${TMPDIR:-/tmp}/holdfast-dashboard.XXXXXX")
daemon=""
cleanup() {
    [[ -z $daemon ]] || kill "$daemon" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/specs"
python3 - "$work/specs" "$policies" <<'PY'
import sys
folder, count = sys.argv[1], int(sys.argv[2])
docs = [f"""apiVersion: holdfast.dev/v1alpha1
kind: BackupPolicy
metadata:
  name: app-{i:04}
spec:
  schedule: '0 3 * * *'
  targets: {{volumes: [app-{i:04}-data]}}
  retention: {{keepDaily: 7}}
""" for i in range(count)]
for f in range(0, count, 100):
    with open(f"{folder}/apps-{f // 100:02}.yaml", "w") as out:
        out.write("---\n".join(docs[f:f + 100]))
PY

HOLDFAST_SPECS="$work/specs" HOLDFAST_STATE="$work/state" HOLDFAST_REPOSITORY="$work/repository" \
    "$binary" run --listen 127.0.0.1:0 2>"$work/daemon.log" &
daemon=$!
addr=""
for _ in $(seq 300); do
    addr=$(grep -o 'listening on http://[0-9.:]*' "$work/daemon.log" | head -n 1 | sed 's|listening on http://||') || true
    [[ -n $addr ]] && break
    sleep 0.1
done
[[ -n $addr ]] || { cat "$work/daemon.log" >&2; echo "the daemon never listened" >&2; exit 1; }
for _ in $(seq 600); do
    n=$(curl -sf "http://$addr/api/v1/overview" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["objects"]))' 2>/dev/null) || n=0
    ((n == policies)) && break
    sleep 0.1
done
((n == policies)) || { echo "the overview never listed $policies objects (last: $n)" >&2; exit 1; }

echo "== $loads loads of the overview of $policies policies" >&2
result=$(LOADS="$loads" /usr/bin/python3 tests/browser/dashboard.py perf "http://$addr" "$work/shots" | grep '"result"')

# The whole page's weight on the wire: every asset as the server sends it gzipped.
gzip_total=0
raw_total=0
while IFS= read -r file; do
    path=${file#ui/}
    gz=$(curl -sf -H 'Accept-Encoding: gzip' -o /dev/null -w '%{size_download}' "http://$addr/ui/$path")
    raw=$(curl -sf -o /dev/null -w '%{size_download}' "http://$addr/ui/$path")
    gzip_total=$((gzip_total + gz))
    raw_total=$((raw_total + raw))
done < <(find ui -type f | sort)

python3 - "$result" "$gzip_total" "$raw_total" "$policies" <<'PY'
import json, statistics, sys
result = json.loads(sys.argv[1])["result"]
gz, raw, policies = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
loads = result["loads"]
rendered = sorted(l["renderedMs"] for l in loads)
api = sorted(l["apiEndMs"] - l["apiStartMs"] for l in loads)
html = sorted(l["htmlMs"] for l in loads)
assert all(l["rows"] == policies for l in loads), loads
def row(name, values, target=None):
    median = statistics.median(values)
    verdict = "" if target is None else ("met" if max(values) <= target else "MISSED")
    ratio = "" if target is None else f"{max(values) / target:.2f}x"
    print(f"| {name} | {median:.0f} ms | {max(values):.0f} ms | {'' if target is None else f'{target} ms'} | {ratio} | {verdict} |")
print(f"\n{len(loads)} loads, empty cache each, {policies} policies, release build, loopback\n")
print("| measure | median | worst | target | worst / target | verdict |")
print("| --- | --- | --- | --- | --- | --- |")
row("navigation start to overview rendered", rendered, 300)
row("  of which /api/v1/overview", api)
row("  of which the HTML page", html)
print(f"| assets, gzipped (all of ui/) | {gz / 1024:.1f} KiB | | 200 KiB | {gz / 1024 / 200:.2f}x | {'met' if gz <= 200 * 1024 else 'MISSED'} |")
print(f"| assets, uncompressed | {raw / 1024:.1f} KiB | | | | |")
print(f"| requests to other hosts | {len(result['external'])} | | 0 | | {'met' if not result['external'] else 'MISSED'} |")
PY
