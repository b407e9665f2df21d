#!/usr/bin/env bash
# Compares holdfast's tar.zst archiving with `tar | zstd -3 -T0` and restic on a fixed,
# seeded ~1.2 GiB dataset. Run as root from the repository root:
#
#   bench/archive.sh [--data DIR] [--runs N] [--small-volumes-only]
#
# Last, a stack of many small volumes (40 volumes of 3 to 4 MiB of small files) is backed
# up with `--archive-parallelism 1` and with one per core, and the speed-up printed;
# `--small-volumes-only` runs only that case.
#
# The dataset is generated once (bench/gen_data.py) into DIR/tree, by default
# ./target/bench-data. Each tool runs N times (default 3), interleaved; the best wall time
# of each is compared. Page caches are dropped before every run when the kernel allows
# it; otherwise every run starts with the data read once, so all runs see a warm cache.
set -euo pipefail

data_dir=target/bench-data
runs=3
small_only=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --data) data_dir="$2"; shift 2 ;;
        --runs) runs="$2"; shift 2 ;;
        --small-volumes-only) small_only=1; shift ;;
        *) echo "usage: $0 [--data DIR] [--runs N] [--small-volumes-only]" >&2; exit 2 ;;
    esac
done

# shellcheck source=bench/lib.sh
source bench/lib.sh
need_pkg zstd zstd
need_pkg restic restic
[[ -x /usr/bin/time ]] || need_pkg /usr/bin/time time

echo "== building" >&2
cargo build --release --quiet --example archive_bench --bin holdfast
target_dir="${CARGO_TARGET_DIR:-target}"
bench_bin="$target_dir/release/examples/archive_bench"

if [[ -z "$small_only" ]]; then
    ensure_dataset "$data_dir"
fi

mkdir -p "$data_dir"
work=$(mktemp -d "$data_dir/run.XXXXXX")
small_volumes=40
cleanup() {
    docker rm -f hfbench_app_1 hfbenchsmall_app_1 >/dev/null 2>&1 || true
    docker volume rm hfbench_data >/dev/null 2>&1 || true
    for ((v = 0; v < small_volumes; v++)); do
        docker volume rm "hfbenchsmall_v$v" >/dev/null 2>&1 || true
    done
    rm -rf "$work"
}
trap cleanup EXIT

if sync && echo 3 >/proc/sys/vm/drop_caches 2>/dev/null; then
    cache_mode="cold: page caches dropped before every run"
    prepare() { sync; echo 3 >/proc/sys/vm/drop_caches; }
    prepare_small() { prepare; }
else
    cache_mode="warm: drop_caches not permitted, so the data is read once before every run"
    prepare() { tar -cf - -C "$src" . >/dev/null; }
    prepare_small() {
        local v
        for ((v = 0; v < small_volumes; v++)); do
            tar -cf - -C "$(docker volume inspect -f '{{.Mountpoint}}' "hfbenchsmall_v$v")" . >/dev/null
        done
    }
fi

now() { date +%s.%N; }
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
holdfast_bin="$target_dir/release/holdfast"

# Many small volumes: one stack mounting $small_volumes volumes, each 3 to 4 MiB of small
# files (seeded; half compressible), backed up with the stack stopped, one volume after
# the other and then one per core at once, interleaved, best of $runs each. Each source
# is an artifact of its own, so the archives hold the same bytes; what parallelism wins
# is the time a small source leaves the cores idle (walking, opening, fsyncing, zstd's
# start), which one source at a time cannot fill.
small_volumes_case() {
    echo >&2
    echo "== many small volumes: $small_volumes volumes, --archive-parallelism 1 against $(nproc)" >&2
    scripts/test-env.sh >/dev/null
    docker rm -f hfbenchsmall_app_1 >/dev/null 2>&1 || true
    local mounts=() v dir
    for ((v = 0; v < small_volumes; v++)); do
        docker volume rm "hfbenchsmall_v$v" >/dev/null 2>&1 || true
        docker volume create "hfbenchsmall_v$v" >/dev/null
        dir=$(docker volume inspect -f '{{.Mountpoint}}' "hfbenchsmall_v$v")
        python3 - "$dir" "$v" <<'PY'
import os, random, sys
root, seed = sys.argv[1], int(sys.argv[2])
rng = random.Random(seed)
words = [bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9))) for _ in range(500)]
total, target = 0, rng.randint(3 << 20, 4 << 20)
n = 0
while total < target:
    folder = os.path.join(root, f"d{n // 50}")
    os.makedirs(folder, exist_ok=True)
    size = rng.randint(1 << 10, 48 << 10)
    if n % 2:
        data = rng.randbytes(size)
    else:
        data = b" ".join(rng.choice(words) for _ in range(size // 5))[:size]
    with open(os.path.join(folder, f"f{n}.dat"), "wb") as f:
        f.write(data)
    total += len(data)
    n += 1
PY
        mounts+=(-v "hfbenchsmall_v$v:/v$v")
    done
    docker run -d --init --name hfbenchsmall_app_1 --label com.docker.compose.project=hfbenchsmall \
        --label com.docker.compose.service=app "${mounts[@]}" holdfast-test/busybox:1 \
        sleep 1000000 >/dev/null
    local small_bytes small_files
    small_bytes=$(for ((v = 0; v < small_volumes; v++)); do
        du -sb --apparent-size "$(docker volume inspect -f '{{.Mountpoint}}' "hfbenchsmall_v$v")"
    done | awk '{ s += $1 } END { print s }')
    small_files=$(for ((v = 0; v < small_volumes; v++)); do
        find "$(docker volume inspect -f '{{.Mountpoint}}' "hfbenchsmall_v$v")" -type f
    done | wc -l)
    mkdir -p "$work/specs-small"
    cat >"$work/specs-small/small.yaml" <<'YAML'
apiVersion: holdfast.dev/v1alpha1
kind: BackupPolicy
metadata: {name: small}
spec:
  schedule: '@daily'
  targets: {stacks: [hfbenchsmall]}
  include: {recipe: false}
  consistency: {stop: stack, stopTimeout: 5s}
  output: {format: tar.zst, level: 3}
YAML
    local p i t0 t1 took rss archive_s manifest cores
    cores=$(nproc)
    declare -A best_wall best_archive worst_rss sums
    for ((i = 1; i <= runs; i++)); do
        for p in 1 "$cores"; do
            rm -rf "$work/state-small" "$work/repo-small"
            prepare_small
            t0=$(now)
            /usr/bin/time -v -o "$work/time-small.txt" "$holdfast_bin" backup small \
                --specs "$work/specs-small" --state "$work/state-small" \
                --repository "$work/repo-small" --archive-parallelism "$p" -o json \
                >"$work/outcome-small.json" 2>"$work/backup-small.log"
            t1=$(now)
            took=$(echo "$t1 - $t0" | bc)
            rss=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$work/time-small.txt")
            manifest=$(find "$work/repo-small" -name manifest.json)
            archive_s=$(python3 -c 'import json,sys; print("%.3f" % json.load(open(sys.argv[1]))["timings"]["archive"])' "$manifest")
            # The artifacts must not depend on the parallelism.
            sums[$p]=$(python3 -c 'import json,sys; print(" ".join(a["sha256"] for a in json.load(open(sys.argv[1]))["artifacts"]))' "$manifest")
            printf 'run %d, parallelism %d: %.2fs wall, archive phase %ss, max RSS %d MiB\n' "$i" "$p" "$took" "$archive_s" "$((rss / 1024))"
            if [[ -z "${best_wall[$p]:-}" || $(echo "$took < ${best_wall[$p]}" | bc) == 1 ]]; then
                best_wall[$p]=$took
            fi
            if [[ -z "${best_archive[$p]:-}" || $(echo "$archive_s < ${best_archive[$p]}" | bc) == 1 ]]; then
                best_archive[$p]=$archive_s
            fi
            ((rss > ${worst_rss[$p]:-0})) && worst_rss[$p]=$rss
        done
    done
    [[ "${sums[1]}" == "${sums[$cores]}" ]] || { echo "the artifacts differ between parallelism 1 and $cores" >&2; exit 1; }
    [[ $(docker inspect -f '{{.State.Status}}' hfbenchsmall_app_1) == running ]] || { echo "the stack was left stopped" >&2; exit 1; }
    echo
    echo "small:     $small_volumes volumes, $small_files files, $(mib "$small_bytes") MiB; $cores cores; cache $cache_mode"
    for p in 1 "$cores"; do
        printf '           parallelism %d: best %.2fs wall, archive phase %.2fs, peak RSS %d MiB\n' \
            "$p" "${best_wall[$p]}" "${best_archive[$p]}" "$((worst_rss[$p] / 1024))"
    done
    awk -v a1="${best_archive[1]}" -v an="${best_archive[$cores]}" -v w1="${best_wall[1]}" -v wn="${best_wall[$cores]}" -v n="$cores" 'BEGIN {
        printf "speed-up:  parallelism %d against 1: archive phase %.2fx, wall %.2fx (identical artifacts)\n", n, a1 / an, w1 / wn }'
}

if [[ -n "$small_only" ]]; then
    small_volumes_case
    exit 0
fi

src_bytes=$(du -sb --apparent-size "$src" | cut -f1)
src_files=$(find "$src" -type f | wc -l)

best_h=""; best_p=""; best_r=""; rss_kb=""; size_h=0; size_p=0
for ((i = 1; i <= runs; i++)); do
    rm -rf "$work/h" "$work/p.tar.zst" "$work/restic"
    prepare
    t0=$(now)
    /usr/bin/time -v -o "$work/time.txt" "$bench_bin" "$src" "$work/h" tar.zst 3 >"$work/info.json"
    t1=$(now)
    th=$(echo "$t1 - $t0" | bc)
    rss=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$work/time.txt")
    size_h=$(stat -c %s "$work/h/bench.tar.zst")
    [[ -z "$rss_kb" || "$rss" -gt "$rss_kb" ]] && rss_kb=$rss
    [[ -z "$best_h" || $(echo "$th < $best_h" | bc) == 1 ]] && best_h=$th

    prepare
    t0=$(now)
    tar -cf - -C "$src" . | zstd -3 -T0 -q -o "$work/p.tar.zst"
    t1=$(now)
    tp=$(echo "$t1 - $t0" | bc)
    size_p=$(stat -c %s "$work/p.tar.zst")
    [[ -z "$best_p" || $(echo "$tp < $best_p" | bc) == 1 ]] && best_p=$tp

    export RESTIC_PASSWORD=holdfast-bench
    restic init --quiet --repo "$work/restic" >/dev/null
    prepare
    t0=$(now)
    restic backup --quiet --repo "$work/restic" "$src" >/dev/null
    t1=$(now)
    tr=$(echo "$t1 - $t0" | bc)
    [[ -z "$best_r" || $(echo "$tr < $best_r" | bc) == 1 ]] && best_r=$tr
    printf 'run %d: holdfast %.2fs (max RSS %d KiB), tar|zstd %.2fs, restic %.2fs\n' "$i" "$th" "$rss" "$tp" "$tr"
done

# The artifact must read back with the stock tools.
entries=$(zstd -dc "$work/h/bench.tar.zst" | tar -tf - | wc -l)

thr() { awk -v b="$src_bytes" -v t="$1" 'BEGIN { printf "%.1f", b / 1048576 / t }'; }
echo
echo "dataset:   $src: $src_files files, $(mib "$src_bytes") MiB; $(nproc) cores; cache $cache_mode"
echo "holdfast:  tar.zst -3: best ${best_h}s, $(thr "$best_h") MiB/s, output $(mib "$size_h") MiB, $entries entries (zstd -dc | tar -t)"
echo "           $(cat "$work/info.json")"
echo "pipeline:  tar -cf - | zstd -3 -T0: best ${best_p}s, $(thr "$best_p") MiB/s, output $(mib "$size_p") MiB"
echo "restic:    backup (new repo): best ${best_r}s, $(thr "$best_r") MiB/s"
awk -v h="$best_h" -v p="$best_p" -v sh="$size_h" -v sp="$size_p" 'BEGIN {
    printf "ratio:     throughput holdfast/pipeline %.3f, output size holdfast/pipeline %.4f\n", p / h, sh / sp }'
echo "peak RSS:  holdfast $((rss_kb / 1024)) MiB (Maximum resident set size, /usr/bin/time -v, worst run)"

# End to end: the same data in a Docker volume of a (one-container) stack, archived by
# `holdfast backup` with the stack stopped, as a user would run it.
echo >&2
echo "== end to end: holdfast backup of a stack whose volume holds the dataset" >&2
scripts/test-env.sh >/dev/null
docker rm -f hfbench_app_1 >/dev/null 2>&1 || true
docker volume rm hfbench_data >/dev/null 2>&1 || true
docker volume create hfbench_data >/dev/null
cp -a "$src/." "$(docker volume inspect -f '{{.Mountpoint}}' hfbench_data)/"
docker run -d --init --name hfbench_app_1 --label com.docker.compose.project=hfbench \
    --label com.docker.compose.service=app -v hfbench_data:/data holdfast-test/busybox:1 \
    sleep 1000000 >/dev/null
mkdir -p "$work/specs"
cat >"$work/specs/bench.yaml" <<'YAML'
apiVersion: holdfast.dev/v1alpha1
kind: BackupPolicy
metadata: {name: bench}
spec:
  schedule: '@daily'
  targets: {stacks: [hfbench]}
  consistency: {stop: stack, stopTimeout: 5s}
  output: {format: tar.zst, level: 3}
YAML
best_e=""; rss_e=0
for ((i = 1; i <= runs; i++)); do
    rm -rf "$work/state" "$work/repo"
    prepare
    t0=$(now)
    /usr/bin/time -v -o "$work/time-e.txt" "$holdfast_bin" backup bench --specs "$work/specs" --state "$work/state" \
        --repository "$work/repo" -o json >"$work/outcome.json" 2>"$work/backup.log"
    t1=$(now)
    te=$(echo "$t1 - $t0" | bc)
    rss=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$work/time-e.txt")
    ((rss > rss_e)) && rss_e=$rss
    manifest=$(find "$work/repo" -name manifest.json)
    archive_s=$(python3 -c 'import json,sys; print("%.2f" % json.load(open(sys.argv[1]))["timings"]["archive"])' "$manifest")
    down_s=$(python3 -c 'import json,sys; print("%.2f" % json.load(open(sys.argv[1]))["downtime"]["hfbench"])' "$manifest")
    printf 'run %d: holdfast backup %.2fs wall, archive phase %ss, downtime %ss, max RSS %d KiB\n' "$i" "$te" "$archive_s" "$down_s" "$rss"
    if [[ -z "$best_e" || $(echo "$te < $best_e" | bc) == 1 ]]; then
        best_e=$te; best_archive=$archive_s; best_down=$down_s
    fi
done
[[ $(docker inspect -f '{{.State.Status}}' hfbench_app_1) == running ]] || { echo "the stack was left stopped" >&2; exit 1; }
echo "backup:    holdfast backup (stack stopped, volume read from the host): best ${best_e}s wall, $(thr "$best_e") MiB/s end to end"
echo "           archive phase ${best_archive}s ($(thr "$best_archive") MiB/s); ratio against the pipeline $(awk -v a="$best_archive" -v p="$best_p" 'BEGIN { printf "%.3f", p / a }')"
echo "downtime:  ${best_down}s (target: at most the archive phase + 2 s = $(awk -v a="$best_archive" 'BEGIN { printf "%.2f", a + 2 }')s)"
echo "peak RSS:  holdfast backup $((rss_e / 1024)) MiB"

small_volumes_case
