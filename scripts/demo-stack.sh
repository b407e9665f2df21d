#!/usr/bin/env bash
# Starts or removes the demo Compose stack (examples/compose/demo).
#   demo-stack.sh up    start it and wait until every service is healthy
#   demo-stack.sh down  stop it and delete its containers, network and volumes
# Extra arguments go to the docker-compose command. Needs scripts/test-env.sh
# to have run first (Docker engine and holdfast-test/* images).
set -euo pipefail

script_dir=$(cd "$(dirname "$0")" && pwd)
compose_file=$script_dir/../examples/compose/demo/docker-compose.yml
# Fixed, so that the stack is "demo" even when the folder is copied elsewhere.
project=demo
timeout=${HOLDFAST_DEMO_TIMEOUT:-90}

say() { echo "demo-stack: $*" >&2; }

compose() {
	docker-compose -p "$project" -f "$compose_file" "$@"
}

# Prints one line per container: name, state, health ("none" without a
# healthcheck).
container_states() {
	local ids
	ids=$(compose ps -q)
	[[ -n $ids ]] || return 0
	# shellcheck disable=SC2086 # one argument per container id
	docker inspect -f '{{.Name}} {{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' $ids |
		sed 's,^/,,'
}

wait_healthy() {
	local want have states deadline=$((SECONDS + timeout))
	want=$(compose config --services | wc -l)
	while :; do
		states=$(container_states)
		have=$(grep -c . <<<"$states" || true)
		if ((have == want)) && ! grep -qvE ' running (healthy|none)$' <<<"$states"; then
			say "all $want services healthy after $((SECONDS + timeout - deadline)) s"
			return 0
		fi
		if grep -qE ' (exited|dead) ' <<<"$states"; then
			say "a service stopped:"
			echo "$states" >&2
			compose logs --tail=30 >&2 || true
			return 1
		fi
		if ((SECONDS >= deadline)); then
			say "not healthy within $timeout s:"
			echo "$states" >&2
			compose logs --tail=30 >&2 || true
			return 1
		fi
		sleep 1
	done
}

case ${1:-} in
up)
	shift
	compose up -d "$@"
	wait_healthy
	;;
down)
	shift
	compose down -v --remove-orphans "$@"
	;;
*)
	echo "usage: $0 up|down [docker-compose options]" >&2
	exit 2
	;;
esac
