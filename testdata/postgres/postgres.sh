#!/usr/bin/env bash
# Start or stop a throwaway PostgreSQL on 127.0.0.1 for the batch tests (sync/batch, the
# multi-machine path of `mailferry batch`).
#
#   postgres.sh start DIR    install PostgreSQL if missing, (re)create DIR, initdb, start, write DIR/env
#   postgres.sh stop DIR     stop the server started for DIR
#   postgres.sh up DIR       start it again, its data kept (the batch test of a database outage)
#
# The port comes from POSTGRES_PORT (default 25432). DIR/env exports MAILFERRY_TEST_PG, the URL of
# an empty database "mailferry" owned by user "mailferry" (trust authentication on loopback only:
# the server is a test fixture). As root, the server runs as the "postgres" user.
set -euo pipefail

[ $# -eq 2 ] || { echo "usage: $0 start|stop|up DIR" >&2; exit 2; }
CMD=$1
D=$(realpath -m "$2")
[ "$D" != / ] || { echo "postgres.sh: refusing DIR=/" >&2; exit 2; }
PORT=${POSTGRES_PORT:-25432}
MARKER=$D/.mailferry-postgres

log() { echo "postgres.sh: $*" >&2; }

bindir() {
	local d
	# Debian keeps the server binaries out of PATH; a directory needs all three.
	for d in /usr/lib/postgresql/*/bin "$(dirname "$(command -v pg_ctl 2>/dev/null || echo /nonexistent/x)")"; do
		[ -x "$d/pg_ctl" ] && [ -x "$d/initdb" ] && [ -x "$d/psql" ] && { echo "$d"; return; }
	done
	return 1
}

install_packages() {
	bindir >/dev/null 2>&1 && return 0
	log "installing postgresql"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >/dev/null
	apt-get install -y -qq --no-install-recommends postgresql >/dev/null
	bindir >/dev/null || { log "no pg_ctl after installing postgresql"; exit 1; }
}

# as_owner runs a command as the server's owner: postgres when we are root.
as_owner() {
	if [ "$(id -u)" = 0 ]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

stop() {
	local bin
	bin=$(bindir) || return 0
	if [ -f "$D/data/postmaster.pid" ]; then
		as_owner "$bin/pg_ctl" -D "$D/data" -m fast -w stop >/dev/null || true
	fi
}

# up starts the server of DIR on PORT.
up() {
	local bin
	bin=$(bindir)
	as_owner "$bin/pg_ctl" -D "$D/data" -l "$D/server.log" -w \
		-o "-c listen_addresses=127.0.0.1 -p $PORT -k $D -c fsync=off -c max_connections=200" start >/dev/null ||
		{ tail -n 20 "$D/server.log" >&2; exit 1; }
}

start() {
	install_packages
	local bin
	bin=$(bindir)
	if [ -e "$D" ]; then
		[ -f "$MARKER" ] || [ -z "$(ls -A "$D")" ] || { log "$D is not empty and was not made by postgres.sh"; exit 2; }
		stop
		rm -rf "$D"
	fi
	mkdir -p "$D"
	touch "$MARKER"
	[ "$(id -u)" = 0 ] && chown postgres "$D"
	as_owner "$bin/initdb" -D "$D/data" -U postgres --auth=trust -E UTF8 --no-locale >"$D/initdb.log"
	up
	as_owner "$bin/psql" -q -h 127.0.0.1 -p "$PORT" -U postgres -d postgres \
		-c "CREATE ROLE mailferry LOGIN" -c "CREATE DATABASE mailferry OWNER mailferry" >/dev/null
	echo "export MAILFERRY_TEST_PG=postgres://mailferry@127.0.0.1:$PORT/mailferry?sslmode=disable" >"$D/env"
	log "PostgreSQL on 127.0.0.1:$PORT; . $D/env"
}

case $CMD in
start) start ;;
stop) stop ;;
up) [ -f "$MARKER" ] || { log "$D was not made by postgres.sh start"; exit 2; }; up ;;
*) echo "usage: $0 start|stop|up DIR" >&2; exit 2 ;;
esac
