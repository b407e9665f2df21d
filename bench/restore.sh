#!/usr/bin/env bash
# Compares holdfast's extraction of a tar.zst artifact with `zstd -dc | tar -xf -` on the
# fixed ~1.2 GiB dataset of bench/archive.sh. Run as root from the repository root:
#
#   bench/restore.sh [--data DIR] [--runs N]
#
# The dataset is generated once (bench/gen_data.py) into DIR/tree, by default
# ./target/bench-data, and archived once by holdfast's archiver (tar.zst, level 3). Then
# each side runs N times (default 3), interleaved, into an empty folder, and the best
# wall time of each is compared. Both include making the data durable: holdfast's
# `sync_tree` (one syncfs) and `sync` after tar. Page caches are dropped before every
# run when the kernel allows it; otherwise the artifact is read once before every run,
# so all runs see a warm cache. Every run extracts into a folder of its own, and all are
# removed only at the end: right after 20,000 files are deleted, ext4 spends most of the
# time of creating new ones checking whether each free inode was freed recently, which
# would slow down whichever side comes next. At the end both extracted trees must be
# identical, in content and in metadata, and the same as the source.
set -euo pipefail

data_dir=target/bench-data
runs=3
while [[ $# -gt 0 ]]; do
    case "$1" in
        --data) data_dir="$2"; shift 2 ;;
        --runs) runs="$2"; shift 2 ;;
        *) echo "usage: $0 [--data DIR] [--runs N]" >&2; exit 2 ;;
    esac
done

# shellcheck source=bench/lib.sh
source bench/lib.sh
need_pkg zstd zstd
[[ -x /usr/bin/time ]] || need_pkg /usr/bin/time time

echo "== building" >&2
cargo build --release --quiet --example archive_bench --example restore_bench
target_dir="${CARGO_TARGET_DIR:-target}"
archive_bin="$target_dir/release/examples/archive_bench"
restore_bin="$target_dir/release/examples/restore_bench"

ensure_dataset "$data_dir"

work=$(mktemp -d "$data_dir/restore.XXXXXX")
trap 'rm -rf "$work"' EXIT

echo "== archiving the dataset once (tar.zst, level 3)" >&2
"$archive_bin" "$src" "$work/archive" tar.zst 3 >"$work/info.json"
artifact="$work/archive/bench.tar.zst"
read -r max_entries max_bytes < <(python3 -c \
    'import json,sys; i=json.load(open(sys.argv[1])); print(i["entries"], i["source_bytes"])' "$work/info.json")

if sync && echo 3 >/proc/sys/vm/drop_caches 2>/dev/null; then
    cache_mode="cold: page caches dropped before every run"
    prepare() { sync; echo 3 >/proc/sys/vm/drop_caches; }
else
    cache_mode="warm: drop_caches not permitted, so the artifact is read once before every run"
    prepare() { sync; cat "$artifact" >/dev/null; }
fi

now() { date +%s.%N; }
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
rss_of() { awk -F': ' '/Maximum resident set size/ { print $2 }' "$1"; }
src_bytes=$(du -sb --apparent-size "$src" | cut -f1)
src_files=$(find "$src" -type f | wc -l)

best_h=""; best_t=""; rss_h=0; rss_tar=0; rss_zstd=0
for ((i = 1; i <= runs; i++)); do
    prepare
    t0=$(now)
    /usr/bin/time -v -o "$work/time-h.txt" \
        "$restore_bin" extract "$artifact" "$work/h$i" "$max_entries" "$max_bytes" >"$work/stats.json"
    t1=$(now)
    th=$(echo "$t1 - $t0" | bc)
    rss=$(rss_of "$work/time-h.txt"); ((rss > rss_h)) && rss_h=$rss
    [[ -z "$best_h" || $(echo "$th < $best_h" | bc) == 1 ]] && best_h=$th

    mkdir "$work/t$i"
    prepare
    t0=$(now)
    /usr/bin/time -v -o "$work/time-z.txt" zstd -dcq "$artifact" |
        /usr/bin/time -v -o "$work/time-t.txt" tar -xf - -C "$work/t$i"
    sync
    t1=$(now)
    tt=$(echo "$t1 - $t0" | bc)
    rss=$(rss_of "$work/time-t.txt"); ((rss > rss_tar)) && rss_tar=$rss
    rss=$(rss_of "$work/time-z.txt"); ((rss > rss_zstd)) && rss_zstd=$rss
    [[ -z "$best_t" || $(echo "$tt < $best_t" | bc) == 1 ]] && best_t=$tt
    printf 'run %d: holdfast %.2fs (%s), zstd -dc | tar -x + sync %.2fs\n' "$i" "$th" "$(cat "$work/stats.json")" "$tt"
done

echo "== checking that both trees are identical, and the same as the source" >&2
l_src=$("$restore_bin" listing "$src")
l_h=$("$restore_bin" listing "$work/h$runs")
l_t=$("$restore_bin" listing "$work/t$runs")
# The listing covers type, mode, owner, size, content and link targets; mtimes too here.
meta() { (cd "$1" && find . -mindepth 1 -printf '%p|%y|%m|%U:%G|%s|%T@|%l\n' | LC_ALL=C sort); }
if [[ "$l_h" != "$l_src" || "$l_t" != "$l_src" ]] || ! cmp -s <(meta "$work/h$runs") <(meta "$work/t$runs"); then
    echo "MISMATCH: source $l_src, holdfast $l_h, tar $l_t" >&2
    diff <(meta "$work/h$runs") <(meta "$work/t$runs") | head -20 >&2
    exit 1
fi
identical="identical (listing sha256 ${l_src%% *}; owners, modes, sizes, mtimes, link targets)"

thr() { awk -v b="$src_bytes" -v t="$1" 'BEGIN { printf "%.1f", b / 1048576 / t }'; }
echo
echo "dataset:   $src: $src_files files, $(mib "$src_bytes") MiB; artifact $(mib "$(stat -c %s "$artifact")") MiB tar.zst -3; $(nproc) cores; cache $cache_mode"
echo "holdfast:  extract_artifact + sync_tree: best ${best_h}s, $(thr "$best_h") MiB/s"
echo "baseline:  zstd -dc | tar -xf - -C dir; sync: best ${best_t}s, $(thr "$best_t") MiB/s"
awk -v h="$best_h" -v t="$best_t" 'BEGIN { printf "ratio:     baseline time / holdfast time %.3f (target >= 1.0)\n", t / h }'
echo "peak RSS:  holdfast $((rss_h / 1024)) MiB; baseline tar $((rss_tar / 1024)) MiB + zstd $((rss_zstd / 1024)) MiB (Maximum resident set size, /usr/bin/time -v, worst run)"
echo "trees:     $identical"

# End to end, when a Docker engine answers: `holdfast restore` of a real backup of a volume
# holding the dataset, into a new volume, with everything the command does (checksum of
# the artifact against the manifest, volume creation, extraction, sync), against the same
# baseline.
if ! docker info >/dev/null 2>&1; then
    echo "end to end: skipped (no Docker engine; scripts/test-env.sh starts one)"
    exit 0
fi
cargo build --release --quiet --bin holdfast
bin="$target_dir/release/holdfast"
vol="holdfast-restorebench-$$"
volumes=("$vol")
trap 'for v in "${volumes[@]}"; do docker volume rm -f "$v" >/dev/null 2>&1 || true; done; rm -rf "$work"' EXIT
docker volume create "$vol" >/dev/null
cp -a "$src/." "$(docker volume inspect -f '{{.Mountpoint}}' "$vol")/"
mkdir -p "$work/e2e/specs"
printf 'apiVersion: holdfast.dev/v1alpha1\nkind: BackupPolicy\nmetadata: {name: restorebench}\nspec:\n  schedule: "0 3 1 1 *"\n  targets: {volumes: [%s]}\n  output: {format: tar.zst, level: 3}\n' "$vol" >"$work/e2e/specs/p.yaml"
hf() { HOLDFAST_SPECS="$work/e2e/specs" HOLDFAST_STATE="$work/e2e/state" HOLDFAST_REPOSITORY="$work/e2e/repo" "$bin" "$@"; }
echo "== backing up the volume once with holdfast backup" >&2
id=$(hf backup restorebench -o json 2>"$work/e2e/backup.log" | python3 -c 'import json,sys; o=json.load(sys.stdin); print(o.get("archive_id") or o["archiveId"])')
best_e=""
for ((i = 1; i <= runs; i++)); do
    volumes+=("$vol-r$i")
    prepare
    t0=$(now)
    hf restore --from "$id" --map "$vol=$vol-r$i" -o json >"$work/e2e/out.json" 2>"$work/e2e/err.txt" || {
        cat "$work/e2e/err.txt" "$work/e2e/out.json" >&2
        exit 1
    }
    t1=$(now)
    te=$(echo "$t1 - $t0" | bc)
    [[ -z "$best_e" || $(echo "$te < $best_e" | bc) == 1 ]] && best_e=$te
    printf 'end-to-end run %d: holdfast restore %.2fs\n' "$i" "$te"
done
l_e=$("$restore_bin" listing "$(docker volume inspect -f '{{.Mountpoint}}' "$vol-r$runs")")
[[ "$l_e" == "$l_src" ]] || { echo "MISMATCH: restored volume $l_e, source $l_src" >&2; exit 1; }
echo "end to end: holdfast restore --from $id --map (new volume): best ${best_e}s, $(thr "$best_e") MiB/s; restored volume identical to the source"
awk -v h="$best_e" -v t="$best_t" 'BEGIN { printf "ratio:     baseline time / holdfast restore time %.3f (target >= 1.0)\n", t / h }'
