#!/usr/bin/env bash
# Compares holdfast's restic-format repositories (`format: restic`, written through
# rustic_core) with restic itself, on the fixed ~1.2 GiB dataset of bench/archive.sh in a
# Docker volume, first in a local folder, then in a single-node Garage on loopback
# (scripts/garage.sh). Run as root from the repository root, with a Docker engine
# (scripts/test-env.sh starts one, installs garage and builds the test images):
#
#   bench/incremental.sh [--data DIR] [--runs N] [--churn-runs N] [--garage-dir DIR]
#                        [--small-files N]
#
# For each storage, holdfast (`holdfast backup POLICY` of the volume, the policy writing
# to a Repository with `format: restic`) and restic (`restic backup` of the volume's
# `_data` folder, Debian's restic, its defaults) back up the same folder content into
# repositories of the same kind, interleaved:
#
# 1. the first backup into a new repository, N times (default 2), best of N;
# 2. a re-backup with nothing changed, N times, best of N;
# 3. --churn-runs rounds (default 10), each rewriting 4 KiB of 1 % of the files (seeded,
#    the same files and bytes for both) then re-backing up; the median round is compared;
# 4. the repository size after those rounds (`du -sb` of the folder; the objects under
#    the repository's prefix in the bucket, summed by rclone).
#
# Then, on the local folder: the peak RSS (/usr/bin/time -v) of the first backup of the
# dataset and of a tree of --small-files small files (default 200,000: 200 folders of
# 100 to 2,000 bytes each, seeded), restic's beside it; and the downtime of a compose
# stack (docker-compose, one service mounting the dataset's volume) backed up with
# `consistency: {stop: stack}`, read from the JSON of the second run, when nothing
# changed since the first.
#
# drop_caches is used when the kernel allows it; otherwise every run starts with the
# volume read once, so both sides see a warm cache. Every number is printed with its
# target and whether it is met; nothing is tuned for either side.
set -euo pipefail

data_dir=target/bench-data
runs=2
churn_runs=10
garage_dir=""
small_files=200000
while [[ $# -gt 0 ]]; do
    case "$1" in
        --data) data_dir="$2"; shift 2 ;;
        --runs) runs="$2"; shift 2 ;;
        --churn-runs) churn_runs="$2"; shift 2 ;;
        --garage-dir) garage_dir="$2"; shift 2 ;;
        --small-files) small_files="$2"; shift 2 ;;
        *) echo "usage: $0 [--data DIR] [--runs N] [--churn-runs N] [--garage-dir DIR] [--small-files N]" >&2; exit 2 ;;
    esac
done

# shellcheck source=bench/lib.sh
source bench/lib.sh
need_pkg restic restic
need_pkg rclone rclone
need_pkg bc bc
need_pkg docker-compose docker-compose
[[ -x /usr/bin/time ]] || need_pkg /usr/bin/time time
docker info >/dev/null 2>&1 || { echo "no Docker engine answers; scripts/test-env.sh starts one" >&2; exit 1; }
docker image inspect holdfast-test/busybox:1 >/dev/null 2>&1 ||
    { echo "no image holdfast-test/busybox:1; scripts/test-env.sh builds it" >&2; exit 1; }

echo "== building" >&2
cargo build --release --quiet --bin holdfast
target_dir="${CARGO_TARGET_DIR:-target}"
bin=$(cd "$target_dir/release" && pwd)/holdfast

ensure_dataset "$data_dir"

work=$(mktemp -d "$data_dir/incremental.XXXXXX")
work=$(cd "$work" && pwd)
own_garage_dir=0
if [[ -z "$garage_dir" ]]; then
    garage_dir=$(mktemp -d /dev/shm/holdfast-incbench.XXXXXX)
    own_garage_dir=1
fi
mkdir -p "$garage_dir"
garage_dir=$(cd "$garage_dir" && pwd)
vol="holdfast-incbench-$$"
small_vol="holdfast-incbench-small-$$"
project="hfincbench$$"
stack_up=0
cleanup() {
    if ((stack_up)); then
        docker-compose -p "$project" -f "$work/compose.yaml" down -t 1 >/dev/null 2>&1 || true
    fi
    for v in "$vol" "$small_vol"; do docker volume rm -f "$v" >/dev/null 2>&1 || true; done
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
# restic's S3 client reads the region from here.
export AWS_DEFAULT_REGION="$S3_REGION"
export RCLONE_CONFIG_GARAGE_TYPE=s3 RCLONE_CONFIG_GARAGE_PROVIDER=Other
export RCLONE_CONFIG_GARAGE_ENDPOINT="$S3_ENDPOINT" RCLONE_CONFIG_GARAGE_REGION="$S3_REGION"
export RCLONE_CONFIG_GARAGE_ACCESS_KEY_ID="$AWS_ACCESS_KEY_ID"
export RCLONE_CONFIG_GARAGE_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY"
rc() { env -u AWS_CA_BUNDLE rclone --config /dev/null "$@"; }
rc lsd "garage:" >/dev/null

echo "== copying the dataset into the volume $vol" >&2
docker volume create "$vol" >/dev/null
vol_dir=$(docker volume inspect -f '{{.Mountpoint}}' "$vol")
cp -a "$src/." "$vol_dir/"

# restic's cache and holdfast's (rustic's) in the benchmark's folder, so both start
# without one and none is left behind.
export XDG_CACHE_HOME="$work/cache"
echo "holdfast-incremental-bench" >"$work/password"
export RESTIC_PASSWORD_FILE="$work/password"
mkdir -p "$work/specs"
# A restic-format Repository: `local PATH` or `s3 PREFIX`.
repository() { # name local|s3 path-or-prefix
    {
        printf 'apiVersion: holdfast.dev/v1alpha1\nkind: Repository\nmetadata: {name: %s}\nspec:\n' "$1"
        if [[ $2 == local ]]; then
            printf '  storage: {local: {path: %s}}\n' "$3"
        else
            printf '  storage:\n    s3:\n      endpoint: %s\n      region: %s\n      bucket: %s\n      prefix: %s\n      accessKeyId: {fromEnv: AWS_ACCESS_KEY_ID}\n      secretAccessKey: {fromEnv: AWS_SECRET_ACCESS_KEY}\n' \
                "$S3_ENDPOINT" "$S3_REGION" "$S3_BUCKET" "$3"
        fi
        printf '  format: restic\n  password: {fromFile: %s}\n' "$work/password"
    } >"$work/specs/$1.yaml"
}
policy() { # name repository targets [consistency]
    printf 'apiVersion: holdfast.dev/v1alpha1\nkind: BackupPolicy\nmetadata: {name: %s}\nspec:\n  schedule: "0 3 1 1 *"\n  targets: %s\n  output: {repository: %s}\n%s' \
        "$1" "$3" "$2" "${4:-}" >"$work/specs/$1.yaml"
}
# holdfast with the benchmark's specs, state, (unused) default repository and host name.
hf=(env HOLDFAST_SPECS="$work/specs" HOLDFAST_STATE="$work/state" HOLDFAST_REPOSITORY="$work/default"
    HOLDFAST_HOST=bench "$bin")

if sync && echo 3 >/proc/sys/vm/drop_caches 2>/dev/null; then
    cache_mode="cold: page caches dropped before every run"
    prepare() { sync; echo 3 >/proc/sys/vm/drop_caches; }
else
    cache_mode="warm: drop_caches not permitted, so the volume is read once before every run"
    prepare() { sync; tar -cf - -C "$vol_dir" . >/dev/null; }
fi

now() { date +%s.%N; }
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
rss_of() { awk -F': ' '/Maximum resident set size/ { print $2 }' "$1"; }
# User and system CPU seconds, and voluntary context switches (waits), of a /usr/bin/time -v
# report.
cpu_of() { awk -F': ' '/User time/ { u = $2 } /System time/ { s = $2 } /Voluntary context/ { v = $2 }
    END { printf "CPU %.1fs user + %.1fs sys, %d waits", u, s, v }' "$1"; }
field() { python3 -c 'import json,sys; v=json.load(open(sys.argv[1])); [v := v[k] for k in sys.argv[2:]]; print(v)' "$@"; }
better() { [[ -z "$1" || $(echo "$2 < $1" | bc) == 1 ]]; }
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { printf "%.2f", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
src_bytes=$(du -sb --apparent-size "$src" | cut -f1)
src_files=$(find "$src" -type f | wc -l)

# One holdfast backup of `policy`; sets took and rss, and keeps the outcome in
# $work/outcome.json.
hf_backup() { # policy
    local t0 t1
    t0=$(now)
    if ! /usr/bin/time -v -o "$work/time-h.txt" "${hf[@]}" backup "$1" -o json >"$work/outcome.json" 2>"$work/backup.log" ||
        [[ $(field "$work/outcome.json" phase) != Succeeded ]]; then
        echo "holdfast backup $1 failed:" >&2
        cat "$work/outcome.json" "$work/backup.log" >&2
        exit 1
    fi
    t1=$(now)
    took=$(echo "$t1 - $t0" | bc)
    rss=$(rss_of "$work/time-h.txt")
    cpu=$(cpu_of "$work/time-h.txt")
}
# One restic backup of `dir` into `repo`; sets took and rss.
restic_backup() { # repo dir
    local t0 t1
    t0=$(now)
    /usr/bin/time -v -o "$work/time-r.txt" restic -r "$1" backup --quiet "$2" >/dev/null 2>"$work/restic.log" ||
        { echo "restic backup failed:" >&2; cat "$work/restic.log" >&2; exit 1; }
    t1=$(now)
    took=$(echo "$t1 - $t0" | bc)
    rss=$(rss_of "$work/time-r.txt")
    cpu=$(cpu_of "$work/time-r.txt")
}

# Rewrites 4 KiB at a seeded offset of 1 % of the volume's files (seeded choice): the
# same files and bytes for a given round, whoever backs up next.
churn() { # round
    python3 - "$vol_dir" "$1" <<'PY'
import os, random, sys
root, round_ = sys.argv[1], int(sys.argv[2])
files = sorted(os.path.relpath(os.path.join(d, f), root)
               for d, _, fs in os.walk(root) for f in fs)
rng = random.Random(20261207 + round_)
for rel in rng.sample(files, max(1, len(files) // 100)):
    path = os.path.join(root, rel)
    size = os.path.getsize(path)
    n = min(4096, size)
    with open(path, "r+b") as f:
        f.seek(rng.randint(0, size - n))
        f.write(rng.randbytes(n))
PY
}

repo_bytes() { # local|s3 path-or-prefix
    if [[ $1 == local ]]; then
        du -sb "$2" | cut -f1
    else
        rc size --json "garage:$S3_BUCKET/$2" | python3 -c 'import json,sys; print(json.load(sys.stdin)["bytes"])'
    fi
}

declare -A R # results by "storage.measure"
rss_first_h=0; rss_first_r=0
for kind in local s3; do
    echo "== $kind: first backups" >&2
    policy "inc-$kind" "restic-$kind" "{volumes: [$vol]}"
    best_h=""; best_r=""
    for ((i = 1; i <= runs; i++)); do
        if [[ $kind == local ]]; then
            hf_loc="$work/hf-$i"; r_loc="$work/restic-$i"; r_uri="$r_loc"
        else
            hf_loc="hf-$i"; r_loc="restic-$i"; r_uri="s3:$S3_ENDPOINT/$S3_BUCKET/$r_loc"
        fi
        repository "restic-$kind" "$kind" "$hf_loc"
        # Every first backup starts without holdfast's state of the previous one.
        rm -rf "$work/state"
        prepare
        hf_backup "inc-$kind"
        th=$took; rh=$rss; ch=$cpu
        restic -r "$r_uri" init >/dev/null
        prepare
        restic_backup "$r_uri" "$vol_dir"
        tr=$took; rr=$rss; cr=$cpu
        better "$best_h" "$th" && best_h=$th
        better "$best_r" "$tr" && best_r=$tr
        if [[ $kind == local ]]; then
            ((rh > rss_first_h)) && rss_first_h=$rh
            ((rr > rss_first_r)) && rss_first_r=$rr
        fi
        printf '%s first backup %d: holdfast %.2fs (max RSS %d MiB, %s), restic %.2fs (max RSS %d MiB, %s)\n' \
            "$kind" "$i" "$th" $((rh / 1024)) "$ch" "$tr" $((rr / 1024)) "$cr"
        if ((i < runs)); then
            if [[ $kind == local ]]; then rm -rf "$hf_loc" "$r_loc"; else rc purge "garage:$S3_BUCKET/$hf_loc"; rc purge "garage:$S3_BUCKET/$r_loc"; fi
        fi
    done
    R[$kind.first.h]=$best_h; R[$kind.first.r]=$best_r
    cp "$work/outcome.json" "$work/$kind-first.json"

    echo "== $kind: re-backups, nothing changed" >&2
    best_h=""; best_r=""
    for ((i = 1; i <= runs; i++)); do
        prepare
        hf_backup "inc-$kind"
        th=$took; ch=$cpu
        prepare
        restic_backup "$r_uri" "$vol_dir"
        tr=$took
        better "$best_h" "$th" && best_h=$th
        better "$best_r" "$tr" && best_r=$tr
        printf '%s unchanged %d: holdfast %.2fs (%s), restic %.2fs (%s)\n' "$kind" "$i" "$th" "$ch" "$tr" "$cpu"
    done
    R[$kind.same.h]=$best_h; R[$kind.same.r]=$best_r

    echo "== $kind: $churn_runs rounds of 1 % churn" >&2
    hs=(); rs=()
    for ((i = 1; i <= churn_runs; i++)); do
        # The local and the S3 phases churn different rounds, so every backup sees
        # changes it has not stored yet.
        [[ $kind == local ]] && round=$i || round=$((100 + i))
        churn "$round"
        prepare
        hf_backup "inc-$kind"
        th=$took
        prepare
        restic_backup "$r_uri" "$vol_dir"
        tr=$took
        hs+=("$th"); rs+=("$tr")
        printf '%s churn %d: holdfast %.2fs, restic %.2fs\n' "$kind" "$i" "$th" "$tr"
    done
    cp "$work/outcome.json" "$work/$kind-churn.json"
    R[$kind.churn.h]=$(median "${hs[@]}"); R[$kind.churn.r]=$(median "${rs[@]}")
    R[$kind.size.h]=$(repo_bytes "$kind" "$hf_loc"); R[$kind.size.r]=$(repo_bytes "$kind" "$r_loc")
    printf '%s sizes: holdfast %s MiB, restic %s MiB\n' "$kind" "$(mib "${R[$kind.size.h]}")" "$(mib "${R[$kind.size.r]}")"
    if [[ $kind == local ]]; then
        snaps_h=$(restic -r "$hf_loc" snapshots --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
        snaps_r=$(restic -r "$r_loc" snapshots --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
        # holdfast's repository reads with restic: its check is the proof.
        restic -r "$hf_loc" check >/dev/null 2>"$work/check.log" ||
            { echo "restic check of holdfast's repository failed:" >&2; cat "$work/check.log" >&2; exit 1; }
        local_hf_repo=$hf_loc
    fi
done

echo "== memory: $small_files small files" >&2
docker volume create "$small_vol" >/dev/null
small_dir=$(docker volume inspect -f '{{.Mountpoint}}' "$small_vol")
python3 - "$small_dir" "$small_files" <<'PY'
import os, random, sys
root, count = sys.argv[1], int(sys.argv[2])
rng = random.Random(20261208)
per = 1000
for i in range(count):
    d = os.path.join(root, f"d{i // per:03d}")
    if i % per == 0:
        os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i % per:04d}.dat"), "wb") as f:
        f.write(rng.randbytes(rng.randint(100, 2000)))
PY
small_bytes=$(du -sb --apparent-size "$small_dir" | cut -f1)
repository restic-small local "$work/hf-small"
policy inc-small restic-small "{volumes: [$small_vol]}"
sync; tar -cf - -C "$small_dir" . >/dev/null
hf_backup inc-small
small_th=$took; small_rh=$rss; small_ch=$cpu
restic -r "$work/restic-small" init >/dev/null
sync; tar -cf - -C "$small_dir" . >/dev/null
restic_backup "$work/restic-small" "$small_dir"
small_tr=$took; small_rr=$rss
printf 'small files: holdfast %.2fs (max RSS %d MiB, %s), restic %.2fs (max RSS %d MiB, %s)\n' \
    "$small_th" $((small_rh / 1024)) "$small_ch" "$small_tr" $((small_rr / 1024)) "$cpu"
rm -rf "$work/hf-small" "$work/restic-small"
docker volume rm "$small_vol" >/dev/null

echo "== downtime: a compose stack on the dataset's volume, stop: stack" >&2
cat >"$work/compose.yaml" <<YAML
services:
  app:
    image: holdfast-test/busybox:1
    command: ["sleep", "1000000"]
    init: true
    volumes: ["data:/data"]
volumes:
  data:
    external: true
    name: $vol
YAML
stack_up=1
docker-compose -p "$project" -f "$work/compose.yaml" up -d >/dev/null 2>&1
repository restic-local local "$local_hf_repo"
policy inc-stack restic-local "{stacks: [$project]}" "  consistency: {stop: stack, stopTimeout: 5s}
"
downs=()
for ((i = 1; i <= 2; i++)); do
    prepare
    hf_backup inc-stack
    down=$(field "$work/outcome.json" downtime "$project")
    downs+=("$down")
    printf 'stack backup %d: holdfast %.2fs, downtime %.2fs\n' "$i" "$took" "$down"
done
[[ $(docker inspect -f '{{.State.Status}}' "${project}_app_1") == running ]] ||
    { echo "the stack was left stopped" >&2; exit 1; }
cp "$work/outcome.json" "$work/stack.json"
down_2=${downs[1]}

met() { awk "BEGIN { exit !($1) }" && echo "met" || echo "MISSED"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
row() { # measure holdfast-local restic-local holdfast-s3 restic-s3 ratio-local ratio-s3 "ratio OP TARGET"
    printf '| %s | %s | %s | %s× | %s | %s | %s× | %s | %s / %s |\n' "$1" "$2" "$3" "$6" "$4" "$5" "$7" "$8" \
        "$(met "$6 ${8#ratio }")" "$(met "$7 ${8#ratio }")"
}
echo
echo "dataset:   $src in the volume $vol: $src_files files, $(mib "$src_bytes") MiB; $(nproc) cores; cache $cache_mode"
echo "storage:   a local folder, then Garage $(garage --version 2>/dev/null | awk 'NR == 1 { print $2 }') single node on $S3_ENDPOINT (data in $(df --output=fstype "$garage_dir" | tail -1)); $(restic version | cut -d' ' -f1-2)"
echo "runs:      first and unchanged: best of $runs; churn: median of $churn_runs rounds; interleaved"
echo
echo "| measure | local holdfast | local restic | local ratio | S3 holdfast | S3 restic | S3 ratio | target | met (local / S3) |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
s() { printf '%.2f s' "$1"; }
row "first backup (restic time / holdfast time)" "$(s "${R[local.first.h]}")" "$(s "${R[local.first.r]}")" \
    "$(s "${R[s3.first.h]}")" "$(s "${R[s3.first.r]}")" \
    "$(ratio "${R[local.first.r]}" "${R[local.first.h]}")" "$(ratio "${R[s3.first.r]}" "${R[s3.first.h]}")" "ratio >= 1.0"
row "re-backup, nothing changed (holdfast / restic)" "$(s "${R[local.same.h]}")" "$(s "${R[local.same.r]}")" \
    "$(s "${R[s3.same.h]}")" "$(s "${R[s3.same.r]}")" \
    "$(ratio "${R[local.same.h]}" "${R[local.same.r]}")" "$(ratio "${R[s3.same.h]}" "${R[s3.same.r]}")" "ratio <= 1.0"
row "re-backup, 1 % of files changed (holdfast / restic)" "$(s "${R[local.churn.h]}")" "$(s "${R[local.churn.r]}")" \
    "$(s "${R[s3.churn.h]}")" "$(s "${R[s3.churn.r]}")" \
    "$(ratio "${R[local.churn.h]}" "${R[local.churn.r]}")" "$(ratio "${R[s3.churn.h]}" "${R[s3.churn.r]}")" "ratio <= 1.0"
row "repository size after $churn_runs churn rounds (holdfast / restic)" \
    "$(mib "${R[local.size.h]}") MiB" "$(mib "${R[local.size.r]}") MiB" "$(mib "${R[s3.size.h]}") MiB" "$(mib "${R[s3.size.r]}") MiB" \
    "$(ratio "${R[local.size.h]}" "${R[local.size.r]}")" "$(ratio "${R[s3.size.h]}" "${R[s3.size.r]}")" "ratio <= 1.05"
printf '| stack downtime, stop: stack, nothing changed | %.2f s | | | | | | <= 2 s | %s |\n' "$down_2" "$(met "$down_2 <= 2")"
echo
echo "snapshots: local holdfast $snaps_h (one per volume and run), restic $snaps_r; restic check of holdfast's repository: no errors"
printf 'downtime:  first stack backup %.2f s (a new policy: no parent), second %.2f s\n' "${downs[0]}" "$down_2"
echo "peak RSS:  first backup of the dataset: holdfast $((rss_first_h / 1024)) MiB (target <= 256 MiB: $(met "$rss_first_h / 1024 <= 256")), restic $((rss_first_r / 1024)) MiB"
echo "           first backup of $small_files small files ($(mib "$small_bytes") MiB): holdfast $((small_rh / 1024)) MiB (target <= 256 MiB: $(met "$small_rh / 1024 <= 256")), restic $((small_rr / 1024)) MiB; time holdfast $(s "$small_th"), restic $(s "$small_tr")"
for f in local-first local-churn s3-first s3-churn stack; do
    echo "json:      $f: $(python3 -c 'import json,sys; v=json.load(open(sys.argv[1])); print({k: v.get(k) for k in ("storedBytes", "sourceBytes", "artifacts", "downtime")})' "$work/$f.json")"
done
