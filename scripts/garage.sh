#!/usr/bin/env bash
# A single-node Garage (S3-compatible storage) in a folder, on loopback, for
# benchmarks and manual tries against a real S3 server. The tests start their
# own clusters (tests/common/garage.rs); scripts/test-env.sh installs garage.
#
#   scripts/garage.sh start DIR   start it (or find it running) and print
#                                 `export` lines: S3_ENDPOINT, S3_REGION,
#                                 S3_BUCKET, AWS_ACCESS_KEY_ID and
#                                 AWS_SECRET_ACCESS_KEY; eval them
#   scripts/garage.sh stop DIR    stop it (the data stays in DIR)
#
# Environment:
#   HOLDFAST_GARAGE_PORT  the S3 port (default 3900); RPC uses the next one,
#                         the admin API the one after
set -euo pipefail
# The configuration and the exports hold secrets.
umask 077

say() { echo "garage.sh: $*" >&2; }
die() {
	say "ERROR: $*"
	exit 1
}

(($# == 2)) && [[ $1 == start || $1 == stop ]] || die "usage: $0 start|stop DIR"
mkdir -p "$2"
dir=$(cd "$2" && pwd)
[[ :$PATH: == *":$HOME/.cargo/bin:"* ]] || PATH=$HOME/.cargo/bin:$PATH
command -v garage >/dev/null || die "no garage on PATH nor in ~/.cargo/bin; run scripts/test-env.sh"

running() { [[ -s $dir/garage.pid && $(cat "/proc/$(cat "$dir/garage.pid")/comm" 2>/dev/null) == garage ]]; }
g() { garage -c "$dir/garage.toml" "$@"; }

# Polls `$@` for up to 60 s.
wait_for() {
	local i
	for ((i = 0; i < 600; i++)); do
		"$@" >/dev/null 2>&1 && return 0
		kill -0 "$(cat "$dir/garage.pid")" 2>/dev/null || die "garage exited; see $dir/garage.log"
		sleep 0.1
	done
	die "no answer to '$*' within 60 s; see $dir/garage.log"
}

if [[ $1 == stop ]]; then
	if running; then
		kill "$(cat "$dir/garage.pid")"
		while running; do sleep 0.1; done
	fi
	rm -f "$dir/garage.pid"
	exit 0
fi

if running; then
	cat "$dir/exports"
	exit 0
fi

if [[ ! -e $dir/garage.toml ]]; then
	s3=${HOLDFAST_GARAGE_PORT:-3900}
	admin=$((s3 + 2))
	cat >"$dir/garage.toml" <<EOF
metadata_dir = "$dir/meta"
data_dir = "$dir/data"
db_engine = "sqlite"
replication_factor = 1

rpc_bind_addr = "127.0.0.1:$((s3 + 1))"
rpc_public_addr = "127.0.0.1:$((s3 + 1))"
rpc_secret = "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$s3"

[admin]
api_bind_addr = "127.0.0.1:$admin"
EOF
fi
# The ports of the folder's first start.
s3=$(sed -n '/^\[s3_api\]/,/^\[/ s/^api_bind_addr = "127.0.0.1:\([0-9]*\)"/\1/p' "$dir/garage.toml")
admin=$(sed -n '/^\[admin\]/,$ s/^api_bind_addr = "127.0.0.1:\([0-9]*\)"/\1/p' "$dir/garage.toml")
setsid nohup garage -c "$dir/garage.toml" server </dev/null >>"$dir/garage.log" 2>&1 &
echo $! >"$dir/garage.pid"
wait_for g status

if [[ ! -e $dir/exports ]]; then
	g layout assign -z dc1 -c 1G "$(g node id -q | cut -d@ -f1)" >/dev/null
	g layout apply --version 1 >/dev/null
	wait_for curl -sf "http://127.0.0.1:$admin/health"
	g bucket create holdfast-bench >/dev/null
	key=$(g key create holdfast-bench)
	key_id=$(awk '/^Key ID:/ {print $3}' <<<"$key")
	secret=$(awk '/^Secret key:/ {print $3}' <<<"$key")
	[[ -n $key_id && -n $secret ]] || die "no key id or secret in: $key"
	g bucket allow --read --write --owner holdfast-bench --key "$key_id" >/dev/null
	cat >"$dir/exports" <<EOF
export S3_ENDPOINT=http://127.0.0.1:$s3
export S3_REGION=garage
export S3_BUCKET=holdfast-bench
export AWS_ACCESS_KEY_ID=$key_id
export AWS_SECRET_ACCESS_KEY=$secret
EOF
fi
wait_for curl -sf "http://127.0.0.1:$admin/health"
cat "$dir/exports"
