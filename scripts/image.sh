#!/usr/bin/env bash
# Builds holdfast's container image without a registry: where `docker build`
# cannot pull the Dockerfile's base images, this assembles the same runtime
# image from the files of this machine and loads it with `docker import`.
#
# The root folder holds what the Dockerfile's image holds for holdfast:
# the binary at /usr/local/bin/holdfast, the schemas at
# /usr/share/holdfast/schemas, OpenSSH's client programs (SFTP repositories)
# and tini as PID 1 from the Debian packages of this machine, the shared
# libraries all of them link and the dynamic loader, the CA certificates
# (S3 and webhooks over TLS), /etc/passwd and /etc/group with the user
# holdfast (uid and gid 10001), /tmp, /var/lib/holdfast/{state,repository}
# owned by that user, and /specs. No shell, package manager or other tool
# of Debian's base image comes along.
#
# The image's configuration (ENV, EXPOSE, USER, VOLUME, ENTRYPOINT, CMD,
# WORKDIR, LABEL) is read from the Dockerfile's last stage and handed to
# `docker import --change`, so the two cannot drift apart.
#
# Debian 12 (as the Dockerfile's runtime stage), with the packages tini (or
# Docker's docker-init, the same program), openssh-client and
# ca-certificates installed.
#
# Environment:
#   BINARY      the holdfast binary to put in the image; by default a release
#               build is made with cargo (in CARGO_TARGET_DIR or target/)
#   IMAGE_TAGS  the tags to give it, separated by spaces; by default
#               holdfast:<version of Cargo.toml> and holdfast:latest
set -euo pipefail

root_dir=$(cd "$(dirname "$0")/.." && pwd)
dockerfile=$root_dir/Dockerfile

say() { echo "image: $*" >&2; }
die() {
	say "ERROR: $*"
	exit 1
}

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$root_dir/Cargo.toml" | head -n 1)
[[ -n $version ]] || die "$root_dir/Cargo.toml: no version = \"...\" line"
read -r -a tags <<<"${IMAGE_TAGS:-holdfast:$version holdfast:latest}"
((${#tags[@]})) || die "IMAGE_TAGS is empty; give at least one tag (name:tag)"

binary=${BINARY:-}
if [[ -z $binary ]]; then
	say "building the release binary (cargo build --release --locked)"
	(cd "$root_dir" && "${CARGO:-cargo}" build --release --locked)
	binary=${CARGO_TARGET_DIR:-$root_dir/target}/release/holdfast
fi
[[ -x $binary ]] || die "$binary: no executable holdfast binary there (BINARY names one)"

tini=
for candidate in /usr/bin/tini /usr/bin/docker-init /usr/libexec/docker/docker-init; do
	if [[ -x $candidate ]]; then
		tini=$candidate
		break
	fi
done
[[ -n $tini ]] || die "neither tini nor docker-init found; install Debian's tini package (apt-get install tini)"
ssh=$(command -v ssh) || die "no ssh client found; install Debian's openssh-client package"
certificates=/etc/ssl/certs/ca-certificates.crt
[[ -s $certificates ]] || die "$certificates is missing; install Debian's ca-certificates package"

root=$(mktemp -d "${TMPDIR:-/var/tmp}/holdfast-image.XXXXXX")
archive=$root.tar
trap 'rm -rf "$root" "$archive"' EXIT

# Debian's merged /usr, as in the base image: /bin, /sbin, /lib and /lib64
# are links into /usr, so the paths ldd prints land in /usr.
mkdir -p "$root"/usr/{bin,sbin,lib,lib64,local/bin,share/holdfast}
ln -s usr/bin "$root/bin"
ln -s usr/sbin "$root/sbin"
ln -s usr/lib "$root/lib"
ln -s usr/lib64 "$root/lib64"
mkdir -p "$root"/{etc/ssl/certs,etc/ssh,root,run,specs,tmp,var/tmp}
mkdir -p "$root"/var/lib/holdfast/{state,repository}
chmod 1777 "$root/tmp" "$root/var/tmp"
chmod 700 "$root/root"

# Copies an executable to `dest` in the image, and every library it links
# (with the dynamic loader) to the path ldd finds it at.
add_program() {
	local source=$1 dest=$2 line lib
	install -D -m 0755 "$source" "$root$dest"
	while read -r line; do
		case $line in
		*'=> /'*) lib=${line#*=> } ;;
		/*) lib=$line ;;
		*'not found'*) die "$source: a library it links is missing: $line" ;;
		*) continue ;;
		esac
		lib=${lib%% (*}
		[[ -e $root$lib ]] && continue
		mkdir -p "$(dirname "$root$lib")"
		cp -L "$lib" "$root$lib"
	done < <(ldd "$source" 2>/dev/null || true)
}

add_program "$binary" /usr/local/bin/holdfast
add_program "$tini" /usr/bin/tini
# OpenSSH's client programs, as the openssh-client package installs them
# (its shell scripts aside: the image has no shell).
ssh_files=$(dpkg-query -L openssh-client 2>/dev/null || echo "$ssh")
while read -r file; do
	[[ -f $file && ! -L $file ]] || continue
	case $file in
	/usr/bin/* | /usr/lib/openssh/*)
		[[ $(head -c 4 "$file" | od -An -c | tr -d ' ') == '177ELF' ]] && add_program "$file" "$file"
		;;
	/etc/ssh/ssh_config) cp "$file" "$root$file" ;;
	esac
done <<<"$ssh_files"
[[ -x $root/usr/bin/ssh ]] || die "the ssh client did not make it into the image (from $ssh)"
cp -R "$root_dir/schemas" "$root/usr/share/holdfast/schemas"
cp -L "$certificates" "$root$certificates"

# The users and groups of the Dockerfile's image that holdfast and ssh look
# up, with the fixed ids of its `groupadd`/`useradd` lines.
cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
holdfast:x:10001:10001::/var/lib/holdfast:/usr/sbin/nologin
EOF
cat >"$root/etc/group" <<'EOF'
root:x:0:
nogroup:x:65534:
holdfast:x:10001:
EOF
# Names are looked up in these files and host names also in DNS, as on
# Debian; Docker provides /etc/hosts and /etc/resolv.conf.
printf 'passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n' >"$root/etc/nsswitch.conf"
chmod -R u=rwX,go=rX "$root/usr" "$root/etc"

# The Dockerfile's last stage: its configuration instructions, continuation
# lines joined and comments dropped.
changes=(--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin')
while read -r instruction rest; do
	case ${instruction^^} in
	FROM) changes=("${changes[@]:0:2}") ;;
	ENV | EXPOSE | USER | VOLUME | ENTRYPOINT | CMD | WORKDIR | LABEL)
		[[ $rest != *'$'* ]] ||
			die "$dockerfile: $instruction $rest: variables are not substituted here; write the value"
		changes+=(--change "${instruction^^} $rest")
		;;
	esac
done < <(sed -e '/^[[:space:]]*#/d' "$dockerfile" | sed -e ':a' -e '/\\$/{N;s/\\\n[[:space:]]*/ /;ba' -e '}')

# Owned by root, but for the holdfast user's folder, without needing root here.
tar -C "$root" --numeric-owner --owner=0 --group=0 --exclude=./var/lib/holdfast -cf "$archive" .
tar -C "$root" --numeric-owner --owner=10001 --group=10001 -rf "$archive" ./var/lib/holdfast
id=$(docker import "${changes[@]}" "$archive" "${tags[0]}")
for tag in "${tags[@]:1}"; do
	docker tag "$id" "$tag"
done
say "built ${tags[*]} ($(du -sh "$root" | cut -f1) uncompressed)"
