#!/usr/bin/env bash
# Prepares a Docker engine and the holdfast-test/* images for the integration
# tests and the demo stack (examples/compose/demo), and the storage servers the
# remote repository tests start themselves (Garage for S3, OpenSSH's sshd for
# SFTP), the SMTP server of the e-mail notification tests (aiosmtpd), and
# cargo-deb for the Debian package test.
# Debian 12, run as root. Safe to re-run: every step checks first and
# does nothing when already done.
#
# Environment:
#   HOLDFAST_DOCKER_STORAGE_DRIVER  force a dockerd storage driver (e.g. vfs)
#   HOLDFAST_DOCKERD_LOG            dockerd log file
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

script_dir=$(cd "$(dirname "$0")" && pwd)
recipes=$script_dir/test-images
dockerd_log=${HOLDFAST_DOCKERD_LOG:-/var/log/holdfast-test-dockerd.log}

# Bump when the recipes change in a way the hash below cannot see.
recipe_version=1
busybox_image=holdfast-test/busybox:1
dbbase_image=holdfast-test/dbbase:1
recipe_label=dev.holdfast.test.recipe
# The S3 server of the repository tests (tests/common/garage.rs). Debian ships
# none, so it is built from crates.io into ~/.cargo/bin.
garage_version=2.5.0
garage_log=/tmp/holdfast-test-garage.log

say() { echo "test-env: $*" >&2; }
die() {
	say "ERROR: $*"
	exit 1
}

[[ $(id -u) -eq 0 ]] || die "must run as root"

tmpdirs=()
own_policy=false
cleanup() {
	if $own_policy; then
		rm -f /usr/sbin/policy-rc.d
	fi
	((${#tmpdirs[@]} == 0)) || rm -rf "${tmpdirs[@]}"
}
trap cleanup EXIT

apt_updated=false
apt_install() {
	local missing=() pkg
	for pkg in "$@"; do
		if [[ $(dpkg-query -W -f='${db:Status-Abbrev}' "$pkg" 2>/dev/null) != "ii " ]]; then
			missing+=("$pkg")
		fi
	done
	((${#missing[@]})) || return 0

	say "installing ${missing[*]}"
	# Packaged servers must not start on the host: the tests run them only
	# inside containers. A policy-rc.d that was already there is left alone.
	if [[ ! -e /usr/sbin/policy-rc.d ]]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 755 /usr/sbin/policy-rc.d
		own_policy=true
	fi
	local rc=0
	{
		if ! $apt_updated; then
			apt-get update -qq && apt_updated=true
		fi &&
			apt-get install -y -q --no-install-recommends \
				-o Dpkg::Options::=--force-confdef \
				-o Dpkg::Options::=--force-confold \
				"${missing[@]}"
	} </dev/null >/tmp/holdfast-test-apt.log 2>&1 || rc=$?
	if $own_policy; then
		rm -f /usr/sbin/policy-rc.d
		own_policy=false
	fi
	if ((rc != 0)); then
		tail -n 30 /tmp/holdfast-test-apt.log >&2
		die "apt-get failed (full log: /tmp/holdfast-test-apt.log)"
	fi
}

overlay_works() {
	# dockerd may pick overlay2 on hosts where the kernel refuses the mount
	# later (nested overlay, some sandboxes); a trial mount on the same file
	# system as dockerd's data tells up front.
	local t ok=1
	mkdir -p /var/lib/docker
	t=$(mktemp -d /var/lib/docker/holdfast-overlay-probe.XXXXXX)
	mkdir -p "$t"/{l1,l2,u,w,m}
	if mount -t overlay overlay -o "lowerdir=$t/l1:$t/l2,upperdir=$t/u,workdir=$t/w" "$t/m" 2>/dev/null; then
		touch "$t/m/probe" 2>/dev/null && ok=0
		umount "$t/m"
	fi
	rm -rf "$t"
	return $ok
}

start_dockerd() {
	local args=()
	local driver=${HOLDFAST_DOCKER_STORAGE_DRIVER:-}
	if [[ -z $driver ]] && ! overlay_works; then
		driver=vfs
	fi
	if [[ -n $driver ]]; then
		args+=(--storage-driver="$driver")
	fi
	# Without a usable iptables dockerd refuses to start; containers then
	# still reach each other on their bridge, which is all the tests need.
	if ! iptables -t nat -n -L >/dev/null 2>&1; then
		args+=(--iptables=false --ip-masq=false)
	fi
	# A dockerd or containerd that was killed leaves its pid file behind,
	# and dockerd refuses to start if that pid now belongs to another process.
	remove_stale_pidfile /var/run/docker.pid dockerd
	remove_stale_pidfile /var/run/docker/containerd/containerd.pid containerd
	say "starting dockerd${args[*]:+ ${args[*]}} (log: $dockerd_log)"
	mkdir -p "$(dirname "$dockerd_log")"
	# Fully detached so that a caller capturing our output (CI, $(...))
	# is not kept waiting on a pipe that dockerd would hold open.
	setsid nohup dockerd "${args[@]}" </dev/null >>"$dockerd_log" 2>&1 &
	disown || true
}

pidfile_alive() {
	local file=$1 comm=$2 pid
	[[ -s $file ]] || return 1
	pid=$(cat "$file")
	[[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$comm" ]]
}

remove_stale_pidfile() {
	if [[ -e $1 ]] && ! pidfile_alive "$1" "$2"; then
		rm -f "$1"
	fi
}

dockerd_running() { pidfile_alive /var/run/docker.pid dockerd; }

ensure_docker() {
	# The tests drive Compose v1 even when some other engine is already up.
	if ! command -v docker-compose >/dev/null 2>&1; then
		apt_install docker-compose
	fi
	if docker info >/dev/null 2>&1; then
		return 0
	fi
	if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then
		apt_install docker.io
	fi
	if dockerd_running; then
		say "dockerd is running but not answering yet; waiting"
	else
		start_dockerd
	fi
	local i
	for ((i = 0; i < 60; i++)); do
		if docker info >/dev/null 2>&1; then
			say "docker is up ($(docker info -f '{{.Driver}}' 2>/dev/null) storage)"
			return 0
		fi
		sleep 1
	done
	tail -n 40 "$dockerd_log" >&2 || true
	die "dockerd did not answer within 60 s"
}

recipe_hash() {
	# The image is rebuilt whenever its recipe files or its build function
	# change, so a stale image from an older checkout is never reused.
	{
		echo "$recipe_version"
		(cd "$recipes/$1" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
		declare -f "build_$1"
	} | sha256sum | cut -c1-16
}

copy_recipe() {
	# Owner and modes of the checkout must not leak into the image: servers
	# running as their own user have to read /etc/passwd whatever the umask.
	cp -R "$recipes/$1/." "$2/"
	chown -R 0:0 "$2"
	chmod -R u=rwX,go=rX "$2"
}

# Removes the image a rebuild has just untagged, unless a container still
# uses it, so that recipe changes do not pile up dangling images.
drop_replaced() {
	[[ -n $1 ]] && [[ $1 != "$(docker image inspect -f '{{.Id}}' "$2")" ]] || return 0
	docker image rm "$1" >/dev/null 2>&1 || true
}

image_current() {
	local image=$1 want=$2 have
	have=$(docker image inspect -f "{{index .Config.Labels \"$recipe_label\"}}" "$image" 2>/dev/null) || return 1
	[[ $have == "$want" ]]
}

build_busybox() {
	local hash root old
	hash=$(recipe_hash busybox)
	image_current "$busybox_image" "$hash" && return 0
	old=$(docker image inspect -f '{{.Id}}' "$busybox_image" 2>/dev/null || true)
	say "building $busybox_image"
	root=$(mktemp -d /var/tmp/holdfast-image.XXXXXX)
	tmpdirs+=("$root")
	copy_recipe busybox "$root"
	mkdir -p "$root"/{bin,tmp,root,www,data}
	chmod 1777 "$root/tmp"
	cp /bin/busybox "$root/bin/busybox"
	# Relative links, unlike busybox --install -s, which would point at the
	# temporary build folder.
	local applet
	for applet in $("$root/bin/busybox" --list); do
		[[ $applet == busybox ]] || ln -sf busybox "$root/bin/$applet"
	done
	tar -C "$root" --numeric-owner -c . |
		docker import \
			--change 'ENV PATH=/bin' \
			--change 'CMD ["sh"]' \
			--change "LABEL $recipe_label=$hash" \
			- "$busybox_image" >/dev/null
	drop_replaced "$old" "$busybox_image"
	[[ $(docker run --rm "$busybox_image" sh -c 'echo ok') == ok ]] ||
		die "$busybox_image does not run"
}

build_dbbase() {
	local hash root old
	hash=$(recipe_hash dbbase)
	image_current "$dbbase_image" "$hash" && return 0
	old=$(docker image inspect -f '{{.Id}}' "$dbbase_image" 2>/dev/null || true)
	say "building $dbbase_image"
	root=$(mktemp -d /var/tmp/holdfast-image.XXXXXX)
	tmpdirs+=("$root")
	copy_recipe dbbase "$root"
	chmod 755 "$root/holdfast-entrypoint"
	# Debian's merged-/usr layout, so that the host's /usr mounted over the
	# empty /usr brings /bin, /lib and the dynamic loader along.
	mkdir -p "$root/usr"
	ln -s usr/bin "$root/bin"
	ln -s usr/sbin "$root/sbin"
	ln -s usr/lib "$root/lib"
	ln -s usr/lib64 "$root/lib64"
	mkdir -p "$root"/{root,tmp,run,var/tmp,var/lib,data}
	chmod 1777 "$root/tmp" "$root/var/tmp"
	ln -s ../run "$root/var/run"
	ln -s /usr/share/zoneinfo/Etc/UTC "$root/etc/localtime"
	mkdir -p "$root"/run/{postgresql,mysqld} "$root"/var/lib/{postgresql/data,mysql}
	# Same ids as scripts/test-images/dbbase/etc/passwd, so that new named
	# volumes start out owned by the server that uses them.
	chown -R 999:999 "$root/run/postgresql" "$root/var/lib/postgresql"
	chown -R 998:998 "$root/run/mysqld" "$root/var/lib/mysql"
	chmod 700 "$root/var/lib/postgresql/data"
	tar -C "$root" --numeric-owner -c . |
		docker import \
			--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
			--change 'ENV LANG=C.UTF-8' \
			--change 'ENTRYPOINT ["/holdfast-entrypoint"]' \
			--change "LABEL $recipe_label=$hash" \
			- "$dbbase_image" >/dev/null
	drop_replaced "$old" "$dbbase_image"
	[[ $(docker run --rm -v /usr:/usr:ro --entrypoint /bin/sh "$dbbase_image" -c 'echo ok') == ok ]] ||
		die "$dbbase_image does not run with the host's /usr"
}

# The server processes of Debian's prometheus package (the init script runs
# /usr/bin/prometheus as the prometheus user).
prometheus_servers() { pgrep -x -u prometheus prometheus 2>/dev/null || true; }

ensure_prometheus_tools() {
	# promtool checks the example alert rules and scrape config
	# (tests/observability_files.rs), and Debian ships it only inside the
	# prometheus package, which brings the server too. The server must not
	# stay up on the host: apt_install's guard keeps its service from
	# starting, but a policy-rc.d that was already there may allow it, so
	# any server that appeared during the install is stopped again. Servers
	# that ran before are someone else's and are left alone.
	local before pid new=() alive=() i
	before=" $(prometheus_servers | tr '\n' ' ') "
	apt_install prometheus wrk
	for pid in $(prometheus_servers); do
		[[ $before == *" $pid "* ]] || new+=("$pid")
	done
	((${#new[@]})) || return 0
	say "stopping the prometheus server the package started (pid ${new[*]})"
	kill "${new[@]}" 2>/dev/null || true
	for ((i = 0; i < 20; i++)); do
		alive=()
		for pid in "${new[@]}"; do
			! kill -0 "$pid" 2>/dev/null || alive+=("$pid")
		done
		((${#alive[@]})) || return 0
		sleep 0.5
	done
	die "the prometheus server the package started (pid ${new[*]}) did not stop"
}

garage_current() { [[ $(garage --version 2>/dev/null) == *"$garage_version"* ]]; }

ensure_garage() {
	# `cargo install` puts it in ~/.cargo/bin, which a root shell's PATH
	# often lacks; the tests look there too.
	[[ :$PATH: == *":$HOME/.cargo/bin:"* ]] || export PATH=$HOME/.cargo/bin:$PATH
	garage_current && return 0
	command -v cargo >/dev/null 2>&1 ||
		die "cargo is needed to build Garage $garage_version (install Rust with rustup first)"
	apt_install build-essential pkg-config
	say "building Garage $garage_version with cargo install (about 11 minutes on 2 cores; log: $garage_log)"
	if ! cargo install garage --locked --version "$garage_version" </dev/null >"$garage_log" 2>&1; then
		tail -n 30 "$garage_log" >&2
		die "cargo install garage failed (full log: $garage_log)"
	fi
	garage_current || die "garage --version does not print $garage_version after the install: $(garage --version 2>&1)"
}

ensure_docker
apt_install busybox-static postgresql mariadb-server redis-server sqlite3 zstd
# The storage servers and clients of the remote repository tests: sshd (each
# test starts its own on a loopback port; the package's service is not
# started), the sftp client, rclone and curl to talk S3, age for encryption.
apt_install openssh-server openssh-client age rclone curl
# The SMTP server of the e-mail notification tests (Debian's aiosmtpd; each test
# starts its own on a loopback port) and openssl, which makes its throwaway CA
# and certificates.
apt_install python3-aiosmtpd openssl
# tini and CA certificates for the container image (scripts/image.sh, tests/image.rs).
apt_install tini ca-certificates
# stunnel: the TLS listener in front of the engine's socket of the Docker-over-TLS test
# (tests/docker_tls.rs; each test starts its own on a loopback port, the package's
# service is not started).
apt_install stunnel4
# restic: reading what holdfast writes in the restic format, and the baseline of bench/incremental.sh.
apt_install restic
# A real browser for the dashboard tests (tests/dashboard.rs drives it through
# chromium-driver with Debian's Selenium).
apt_install chromium chromium-driver python3-selenium
ensure_garage
# The Debian package test (tests/deb.rs): cargo-deb at the version scripts/deb.sh
# pins, and man-db, whose `man -l` renders the packaged pages.
apt_install man-db
"$script_dir/deb.sh" --install-cargo-deb
# promtool for the example Prometheus rules; wrk for the API load benchmark.
ensure_prometheus_tools
build_busybox
build_dbbase
say "ready: $(docker info -f '{{.ServerVersion}} {{.Driver}}'), images $busybox_image $dbbase_image, $(garage --version | head -n 1)"
