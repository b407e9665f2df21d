#!/usr/bin/env bash
# Compares holdfast's backups to and restores from S3-compatible storage with the
# pipelines a person would use instead, on the fixed ~1.2 GiB dataset of bench/archive.sh
# in a Docker volume, against a single-node Garage on loopback (scripts/garage.sh). Run as
# root from the repository root, with a Docker engine (scripts/test-env.sh starts one and
# installs garage):
#
#   bench/remote.sh [--data DIR] [--runs N] [--garage-dir DIR]
#
# In one run of the script, each side runs N times (default 3), interleaved, and the best
# wall time of each is compared:
#
# 1. `holdfast backup` of the volume straight to the bucket (`output: {repository:
#    offsite, format: tar.zst, level: 3}`) against `tar -cf - -C VOLUME . | zstd -3 -T0 >
#    file` then `rclone copyto file` to the same bucket (Debian's rclone, its defaults);
# 2. the same backup to an age-encrypted Repository, as an overhead over the plain one;
# 3. the peak RSS of holdfast during those backups (/usr/bin/time -v);
# 4. `holdfast restore --repo offsite` of the plain archive into a new volume (fetch,
#    checks, extraction, sync) against `rclone cat` of the same object `| zstd -d | tar
#    -x -C dir` then `sync`.
#
# Garage keeps its data in a fresh folder of /dev/shm by default (--garage-dir puts it
# elsewhere): the server stands for another machine, whose disk the host's reads and
# writes do not share, and the benchmark's uploads need no room on the host's disk.
# Page caches are dropped before every run when the kernel allows it; otherwise every run
# starts with the volume read once. Restored trees are checked identical to the source.
# Every number is printed with its target and whether it is met; nothing is tuned for
# either side.
set -euo pipefail

data_dir=target/bench-data
runs=3
garage_dir=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --data) data_dir="$2"; shift 2 ;;
        --runs) runs="$2"; shift 2 ;;
        --garage-dir) garage_dir="$2"; shift 2 ;;
        *) echo "usage: $0 [--data DIR] [--runs N] [--garage-dir DIR]" >&2; exit 2 ;;
    esac
done

# shellcheck source=bench/lib.sh
source bench/lib.sh
need_pkg zstd zstd
need_pkg rclone rclone
need_pkg age-keygen age
need_pkg bc bc
[[ -x /usr/bin/time ]] || need_pkg /usr/bin/time time
docker info >/dev/null 2>&1 || { echo "no Docker engine answers; scripts/test-env.sh starts one" >&2; exit 1; }

echo "== building" >&2
cargo build --release --quiet --bin holdfast --example restore_bench
target_dir="${CARGO_TARGET_DIR:-target}"
bin="$target_dir/release/holdfast"
restore_bin="$target_dir/release/examples/restore_bench"

ensure_dataset "$data_dir"

work=$(mktemp -d "$data_dir/remote.XXXXXX")
work=$(cd "$work" && pwd)
own_garage_dir=0
if [[ -z "$garage_dir" ]]; then
    garage_dir=$(mktemp -d /dev/shm/holdfast-remotebench.XXXXXX)
    own_garage_dir=1
fi
mkdir -p "$garage_dir"
garage_dir=$(cd "$garage_dir" && pwd)
vol="holdfast-remotebench-$$"
volumes=("$vol")
cleanup() {
    for v in "${volumes[@]}"; do docker volume rm -f "$v" >/dev/null 2>&1 || true; done
    [[ -d "$garage_dir" ]] && scripts/garage.sh stop "$garage_dir" >/dev/null 2>&1 || true
    ((own_garage_dir)) && rm -rf "$garage_dir"
    rm -rf "$work"
}
trap cleanup EXIT

# Garage on the first free trio of ports (S3, RPC, admin) from 3900, unless one is given.
port_free() { ! ss -Hltn "sport = :$1" | grep -q .; }
if [[ -z "${HOLDFAST_GARAGE_PORT:-}" ]]; then
    HOLDFAST_GARAGE_PORT=3900
    while ! { port_free "$HOLDFAST_GARAGE_PORT" && port_free $((HOLDFAST_GARAGE_PORT + 1)) &&
        port_free $((HOLDFAST_GARAGE_PORT + 2)); }; do
        HOLDFAST_GARAGE_PORT=$((HOLDFAST_GARAGE_PORT + 10))
    done
fi
export HOLDFAST_GARAGE_PORT
echo "== starting Garage on 127.0.0.1:$HOLDFAST_GARAGE_PORT" >&2
eval "$(scripts/garage.sh start "$garage_dir")"

# rclone reads its remote from the environment: no configuration file.
export RCLONE_CONFIG_GARAGE_TYPE=s3 RCLONE_CONFIG_GARAGE_PROVIDER=Other
export RCLONE_CONFIG_GARAGE_ENDPOINT="$S3_ENDPOINT" RCLONE_CONFIG_GARAGE_REGION="$S3_REGION"
export RCLONE_CONFIG_GARAGE_ACCESS_KEY_ID="$AWS_ACCESS_KEY_ID"
export RCLONE_CONFIG_GARAGE_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY"
# Without AWS_CA_BUNDLE: rclone's S3 SDK fails on it with rclone's own HTTP transport
# ("unable to load custom CA bundle"), and the endpoint is plain HTTP anyway.
rc() { env -u AWS_CA_BUNDLE rclone --config /dev/null "$@"; }
rc lsd "garage:" >/dev/null

echo "== copying the dataset into the volume $vol" >&2
docker volume create "$vol" >/dev/null
vol_dir=$(docker volume inspect -f '{{.Mountpoint}}' "$vol")
cp -a "$src/." "$vol_dir/"

age-keygen -o "$work/age.key" 2>/dev/null
recipient=$(age-keygen -y "$work/age.key")
mkdir -p "$work/specs"
repository() { # name prefix [encryption lines]
    printf 'apiVersion: holdfast.dev/v1alpha1\nkind: Repository\nmetadata: {name: %s}\nspec:\n  storage:\n    s3:\n      endpoint: %s\n      region: %s\n      bucket: %s\n      prefix: %s\n      accessKeyId: {fromEnv: AWS_ACCESS_KEY_ID}\n      secretAccessKey: {fromEnv: AWS_SECRET_ACCESS_KEY}\n%s' \
        "$1" "$S3_ENDPOINT" "$S3_REGION" "$S3_BUCKET" "$2" "${3:-}"
}
policy() { # name repository
    printf 'apiVersion: holdfast.dev/v1alpha1\nkind: BackupPolicy\nmetadata: {name: %s}\nspec:\n  schedule: "0 3 1 1 *"\n  targets: {volumes: [%s]}\n  output: {repository: %s, format: tar.zst, level: 3}\n' \
        "$1" "$vol" "$2"
}
repository offsite plain >"$work/specs/offsite.yaml"
repository sealed sealed "$(printf '  encryption:\n    age:\n      recipients: ["%s"]\n      identityFile: %s\n' "$recipient" "$work/age.key")" \
    >"$work/specs/sealed.yaml"
policy remotebench offsite >"$work/specs/remotebench.yaml"
policy remotebench-age sealed >"$work/specs/remotebench-age.yaml"
# holdfast with the benchmark's specs, state, local repository and a fixed host name.
hf=(env HOLDFAST_SPECS="$work/specs" HOLDFAST_STATE="$work/state" HOLDFAST_REPOSITORY="$work/local"
    HOLDFAST_HOST=bench "$bin")

if sync && echo 3 >/proc/sys/vm/drop_caches 2>/dev/null; then
    cache_mode="cold: page caches dropped before every run"
    prepare() { sync; echo 3 >/proc/sys/vm/drop_caches; }
    cold=1
else
    cache_mode="warm: drop_caches not permitted, so the volume is read once before every run"
    prepare() { sync; tar -cf - -C "$vol_dir" . >/dev/null; }
    cold=0
fi

now() { date +%s.%N; }
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
rss_of() { awk -F': ' '/Maximum resident set size/ { print $2 }' "$1"; }
field() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$@"; }
better() { [[ -z "$1" || $(echo "$2 < $1" | bc) == 1 ]]; }
src_bytes=$(du -sb --apparent-size "$src" | cut -f1)
src_files=$(find "$src" -type f | wc -l)

# One holdfast backup of `policy`; sets took, rss, id and stored.
backup() { # policy label
    prepare
    local t0 t1
    t0=$(now)
    if ! /usr/bin/time -v -o "$work/time-b.txt" "${hf[@]}" backup "$1" -o json >"$work/outcome.json" 2>"$work/backup.log" ||
        [[ $(field "$work/outcome.json" phase) != Succeeded ]]; then
        echo "holdfast backup $1 failed:" >&2
        cat "$work/outcome.json" "$work/backup.log" >&2
        exit 1
    fi
    t1=$(now)
    took=$(echo "$t1 - $t0" | bc)
    rss=$(rss_of "$work/time-b.txt")
    id=$(field "$work/outcome.json" archiveId)
    stored=$(field "$work/outcome.json" storedBytes)
}

best_h=""; best_b=""; best_a=""; rss_h=0; rss_a=0; size_h=0; size_b=0; size_a=0
for ((i = 1; i <= runs; i++)); do
    backup remotebench
    th=$took; size_h=$stored; plain_id=$id; rss_1=$rss
    ((rss > rss_h)) && rss_h=$rss
    better "$best_h" "$th" && best_h=$th

    prepare
    t0=$(now)
    tar -cf - -C "$vol_dir" . | zstd -3 -T0 -q >"$work/baseline.tar.zst"
    # A key of its own each run: rclone skips a file the destination already holds (same
    # size and MD5), which would time no upload at all.
    rc copyto "$work/baseline.tar.zst" "garage:$S3_BUCKET/baseline/run$i.tar.zst"
    t1=$(now)
    tb=$(echo "$t1 - $t0" | bc)
    size_b=$(stat -c %s "$work/baseline.tar.zst")
    rm -f "$work/baseline.tar.zst"
    [[ $(rc size --json "garage:$S3_BUCKET/baseline/run$i.tar.zst" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["bytes"])') == "$size_b" ]] ||
        { echo "the baseline's object is not the size of its file" >&2; exit 1; }
    better "$best_b" "$tb" && best_b=$tb

    backup remotebench-age
    ta=$took; size_a=$stored
    ((rss > rss_a)) && rss_a=$rss
    better "$best_a" "$ta" && best_a=$ta
    printf 'backup run %d: holdfast %.2fs (max RSS %d KiB), tar|zstd > file; rclone copyto %.2fs, holdfast + age %.2fs (max RSS %d KiB)\n' \
        "$i" "$th" "$rss_1" "$tb" "$ta" "$rss"
done

# The volume artifact of the last plain archive, for the baseline's restore.
key=$(rc lsf -R --files-only "garage:$S3_BUCKET/plain/" | grep -F "$plain_id/" | grep 'volumes/' | head -1)
[[ -n "$key" ]] || { echo "no volume artifact of $plain_id in the bucket" >&2; exit 1; }
key="plain/$key"
l_src=$("$restore_bin" listing "$src")

echo "== restoring $plain_id from the bucket" >&2
best_r=""; best_t=""; rss_r=0
for ((i = 1; i <= runs; i++)); do
    volumes+=("$vol-r$i")
    prepare
    t0=$(now)
    /usr/bin/time -v -o "$work/time-r.txt" "${hf[@]}" restore --repo offsite --from "$plain_id" --volume "$vol" \
        --map "$vol=$vol-r$i" -o json >"$work/restore.json" 2>"$work/restore.log" || {
        echo "holdfast restore failed:" >&2
        cat "$work/restore.json" "$work/restore.log" >&2
        exit 1
    }
    t1=$(now)
    tr=$(echo "$t1 - $t0" | bc)
    rss=$(rss_of "$work/time-r.txt"); ((rss > rss_r)) && rss_r=$rss
    better "$best_r" "$tr" && best_r=$tr

    mkdir "$work/t$i"
    prepare
    t0=$(now)
    rc cat "garage:$S3_BUCKET/$key" | zstd -dq | tar -xf - -C "$work/t$i"
    sync
    t1=$(now)
    tt=$(echo "$t1 - $t0" | bc)
    better "$best_t" "$tt" && best_t=$tt
    printf 'restore run %d: holdfast restore %.2fs (max RSS %d KiB), rclone cat | zstd -d | tar -x + sync %.2fs\n' \
        "$i" "$tr" "$rss" "$tt"

    l_r=$("$restore_bin" listing "$(docker volume inspect -f '{{.Mountpoint}}' "$vol-r$i")")
    l_t=$("$restore_bin" listing "$work/t$i")
    [[ "$l_r" == "$l_src" && "$l_t" == "$l_src" ]] ||
        { echo "MISMATCH: source $l_src, holdfast $l_r, baseline $l_t" >&2; exit 1; }
    # With cold caches the trees can go now: the next run starts with ext4's inode tables
    # out of memory, so deleting costs the next side nothing (see bench/restore.sh).
    if ((cold)); then
        docker volume rm -f "$vol-r$i" >/dev/null
        rm -rf "$work/t$i"
    fi
done

thr() { awk -v b="$src_bytes" -v t="$1" 'BEGIN { printf "%.1f", b / 1048576 / t }'; }
met() { awk "BEGIN { exit !($1) }" && echo "met" || echo "MISSED"; }
ratio_b=$(awk -v h="$best_h" -v b="$best_b" 'BEGIN { printf "%.3f", b / h }')
overhead=$(awk -v h="$best_h" -v a="$best_a" 'BEGIN { printf "%.1f", (a - h) / h * 100 }')
rss_worst=$(( (rss_h > rss_a ? rss_h : rss_a) / 1024 ))
ratio_r=$(awk -v r="$best_r" -v t="$best_t" 'BEGIN { printf "%.3f", t / r }')
echo
echo "dataset:   $src in the volume $vol: $src_files files, $(mib "$src_bytes") MiB; $(nproc) cores; cache $cache_mode"
echo "storage:   Garage $(garage --version 2>/dev/null | awk 'NR == 1 { print $2 }') single node on $S3_ENDPOINT, data in $(df --output=fstype "$garage_dir" | tail -1) $garage_dir; $(rclone version | head -1); best of $runs, interleaved"
echo "backup:    holdfast backup to S3 (tar.zst -3): best ${best_h}s, $(thr "$best_h") MiB/s, stored $(mib "$size_h") MiB"
echo "baseline:  tar -cf - | zstd -3 -T0 > file; rclone copyto: best ${best_b}s, $(thr "$best_b") MiB/s, stored $(mib "$size_b") MiB"
echo "ratio:     baseline time / holdfast time $ratio_b (target >= 1.3: $(met "$ratio_b >= 1.3"))"
echo "age:       holdfast backup to S3 with age: best ${best_a}s, $(thr "$best_a") MiB/s, stored $(mib "$size_a") MiB"
echo "overhead:  age over the plain backup ${overhead} % (target <= 10 %: $(met "$overhead <= 10"))"
echo "peak RSS:  holdfast backup $((rss_h / 1024)) MiB, with age $((rss_a / 1024)) MiB (worst run, /usr/bin/time -v; target <= 96 MiB: $(met "$rss_worst <= 96"))"
echo "restore:   holdfast restore --repo offsite into a new volume: best ${best_r}s, $(thr "$best_r") MiB/s, peak RSS $((rss_r / 1024)) MiB"
echo "baseline:  rclone cat | zstd -d | tar -x -C dir; sync: best ${best_t}s, $(thr "$best_t") MiB/s"
echo "ratio:     baseline time / holdfast time $ratio_r (target >= 1.0: $(met "$ratio_r >= 1.0"))"
echo "trees:     every restored tree identical to the source (listing sha256 ${l_src%% *})"
