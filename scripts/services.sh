#!/usr/bin/env bash
# Make sure the PostgreSQL and Redis that botfleet needs are reachable; start
# private ones under ./.data when they are not.
#
#   scripts/services.sh ensure   # idempotent: report what runs, start what is missing
#   scripts/services.sh stop     # stop only what this script started
#   scripts/services.sh status   # report, start nothing
#   scripts/services.sh clean    # stop, then delete ./.data (and a /var/tmp fallback)
#
# Reads DATABASE_URL (default postgres://postgres@127.0.0.1:5432/botfleet?sslmode=disable)
# and REDIS_URL (default redis://127.0.0.1:6379/0). Only local hosts (127.0.0.1,
# localhost, ::1) are started; a remote host that does not answer is an error.
# The `botfleet` database itself is created by `botfleet migrate`, not here.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
DATA="$ROOT/.data"

DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/botfleet?sslmode=disable}"
REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/0}"
WAIT_SECONDS="${SERVICES_WAIT_SECONDS:-30}"

log() { printf '%s\n' "$*"; }
die() { printf 'services.sh: %s\n' "$*" >&2; exit 1; }
is_root() { [ "$(id -u)" -eq 0 ]; }

# ---------------------------------------------------------------- URL parsing

# parse_url URL DEFAULT_PORT -> sets U_HOST U_PORT U_USER U_PASS
parse_url() {
	local url="$1" def_port="$2" rest auth hostport
	U_HOST="" U_PORT="" U_USER="" U_PASS=""
	if [[ "$url" != *"://"* ]]; then
		# keyword/value DSN: host=... port=... user=... password=...
		local kv
		for kv in $url; do
			case "$kv" in
			host=*) U_HOST="${kv#host=}" ;;
			port=*) U_PORT="${kv#port=}" ;;
			user=*) U_USER="${kv#user=}" ;;
			password=*) U_PASS="${kv#password=}" ;;
			esac
		done
	else
		rest="${url#*://}"
		rest="${rest%%[/?#]*}"
		if [[ "$rest" == *@* ]]; then
			auth="${rest%@*}"
			hostport="${rest##*@}"
			if [[ "$auth" == *:* ]]; then
				U_USER="${auth%%:*}"
				U_PASS="${auth#*:}"
			else
				U_USER="$auth"
			fi
		else
			hostport="$rest"
		fi
		if [[ "$hostport" == \[* ]]; then # [::1]:5432
			U_HOST="${hostport#\[}"
			U_HOST="${U_HOST%%\]*}"
			local after="${hostport#*\]}"
			[[ "$after" == :* ]] && U_PORT="${after#:}"
		elif [[ "$hostport" == *:* ]]; then
			U_HOST="${hostport%%:*}"
			U_PORT="${hostport##*:}"
		else
			U_HOST="$hostport"
		fi
	fi
	[ -n "$U_HOST" ] || U_HOST=127.0.0.1
	[ -n "$U_PORT" ] || U_PORT="$def_port"
	[[ "$U_PORT" =~ ^[0-9]+$ ]] || die "bad port '$U_PORT' in $url"
}

is_local_host() {
	case "$1" in
	127.0.0.1 | localhost | ::1 | 127.*) return 0 ;;
	*) return 1 ;;
	esac
}

# tcp_open HOST PORT: succeeds when something accepts connections there.
tcp_open() {
	timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null
}

# ------------------------------------------------------------------- PostgreSQL

pg_up() {
	local host="$1" port="$2"
	if command -v pg_isready >/dev/null 2>&1; then
		pg_isready -q -h "$host" -p "$port" -t 2 >/dev/null 2>&1
	else
		tcp_open "$host" "$port"
	fi
}

# Sets PG_BIN to a directory holding initdb, pg_ctl and postgres.
find_pg_bin() {
	PG_BIN=""
	local d
	if command -v pg_ctl >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1; then
		PG_BIN="$(dirname "$(command -v pg_ctl)")"
		return 0
	fi
	# Debian/Ubuntu keep them per major version; take the newest.
	for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5,5 -V -r); do
		if [ -x "$d/pg_ctl" ] && [ -x "$d/initdb" ]; then
			PG_BIN="$d"
			return 0
		fi
	done
	return 1
}

apt_install() {
	is_root || return 1
	command -v apt-get >/dev/null 2>&1 || return 1
	log "    installing $* with apt-get ..."
	export DEBIAN_FRONTEND=noninteractive
	if ! apt-get install -y -q "$@" >/dev/null; then
		apt-get update -q >/dev/null
		apt-get install -y -q "$@" >/dev/null
	fi
}

# Run a command as the user that owns the private cluster (postgres refuses root).
as_pg() {
	if is_root; then
		(cd / && runuser -u postgres -- "$@")
	else
		"$@"
	fi
}

# Debian's postgresql package creates and starts a "main" cluster with password
# auth for TCP. If it took our port, stop it and keep it from starting at boot:
# the private trust-auth cluster is what the project expects.
stop_packaged_cluster_on() {
	local port="$1" ver name cport status
	command -v pg_lsclusters >/dev/null 2>&1 || return 0
	while read -r ver name cport status _; do
		[ "$cport" = "$port" ] || continue
		[[ "$status" == online* ]] || continue
		log "    stopping packaged cluster $ver/$name on port $port (set to manual start)"
		pg_ctlcluster "$ver" "$name" stop || true
		[ -f "/etc/postgresql/$ver/$name/start.conf" ] && echo manual >"/etc/postgresql/$ver/$name/start.conf"
	done < <(pg_lsclusters -h 2>/dev/null || true)
}

# Choose where the cluster lives: ./.data/postgres when the postgres user can use
# it, otherwise /var/tmp/botfleet-pg-<hash> linked from ./.data/postgres.
# Sets PG_BASE (holds postgres/, postgres.log, socket).
choose_pg_base() {
	mkdir -p "$DATA"
	if ! is_root; then
		PG_BASE="$DATA"
		return
	fi
	# A previous run may already have chosen the fallback.
	if [ -L "$DATA/postgres" ]; then
		PG_BASE="$(dirname "$(readlink "$DATA/postgres")")"
		mkdir -p "$PG_BASE"
		chown postgres: "$PG_BASE"
		chmod 0711 "$PG_BASE"
		return
	fi
	chmod o+x "$DATA" 2>/dev/null || true
	mkdir -p "$DATA/postgres"
	chown postgres: "$DATA/postgres"
	chmod 0700 "$DATA/postgres"
	touch "$DATA/postgres.log"
	chown postgres: "$DATA/postgres.log"
	if runuser -u postgres -- test -w "$DATA/postgres" -a -x "$DATA/postgres" -a -w "$DATA/postgres.log" 2>/dev/null; then
		PG_BASE="$DATA"
		return
	fi
	local id
	id="$(printf '%s' "$ROOT" | cksum | cut -d' ' -f1)"
	PG_BASE="/var/tmp/botfleet-pg-$id"
	log "    $DATA is not reachable by the postgres user; using $PG_BASE"
	mkdir -p "$PG_BASE/postgres"
	chown postgres: "$PG_BASE" "$PG_BASE/postgres"
	chmod 0711 "$PG_BASE"
	chmod 0700 "$PG_BASE/postgres"
	rmdir "$DATA/postgres" 2>/dev/null || die "$DATA/postgres is not empty and not usable by the postgres user"
	rm -f "$DATA/postgres.log"
	ln -s "$PG_BASE/postgres" "$DATA/postgres"
	ln -s "$PG_BASE/postgres.log" "$DATA/postgres.log"
}

ensure_postgres() {
	parse_url "$DATABASE_URL" 5432
	local host="$U_HOST" port="$U_PORT"
	if pg_up "$host" "$port"; then
		log "postgres: already running at $host:$port"
		return 0
	fi
	is_local_host "$host" || die "postgres: nothing answers at $host:$port and it is not a local host; start it or fix DATABASE_URL"

	if ! find_pg_bin; then
		apt_install postgresql || die "postgres: binaries not found and cannot install them (need root + apt-get); install PostgreSQL 15+"
		find_pg_bin || die "postgres: installed, but initdb/pg_ctl not found under /usr/lib/postgresql/*/bin"
		stop_packaged_cluster_on "$port"
		if pg_up "$host" "$port"; then
			log "postgres: installed; a server now answers at $host:$port"
			return 0
		fi
	fi

	choose_pg_base
	local pgdata="$PG_BASE/postgres" pglog="$PG_BASE/postgres.log" sockdir listen
	# Unix socket inside the data directory (the one place surely writable by its
	# owner; socket paths are limited to ~100 bytes); TCP only otherwise.
	sockdir="$pgdata"
	[ "${#sockdir}" -lt 90 ] || sockdir=""
	case "$host" in
	localhost) listen=localhost ;;
	::1) listen="::1" ;;
	*) listen=127.0.0.1 ;;
	esac

	if [ ! -f "$pgdata/PG_VERSION" ]; then
		log "    initdb $pgdata"
		as_pg "$PG_BIN/initdb" -D "$pgdata" --auth=trust -U postgres -E UTF8 --locale=C.UTF-8 >"$PG_BASE/initdb.log" 2>&1 ||
			as_pg "$PG_BIN/initdb" -D "$pgdata" --auth=trust -U postgres -E UTF8 --no-locale >"$PG_BASE/initdb.log" 2>&1 ||
			die "postgres: initdb failed, see $PG_BASE/initdb.log"
	fi
	log "    starting $PG_BIN/postgres on $listen:$port (data $pgdata, log $pglog)"
	if ! as_pg "$PG_BIN/pg_ctl" -D "$pgdata" -l "$pglog" -w -t "$WAIT_SECONDS" \
		-o "-c listen_addresses=$listen -p $port -c unix_socket_directories='$sockdir'" start >/dev/null; then
		tail -n 20 "$pglog" >&2 || true
		die "postgres: pg_ctl start failed, see $pglog"
	fi
	local i
	for ((i = 0; i < WAIT_SECONDS * 2; i++)); do
		pg_up "$host" "$port" && break
		sleep 0.5
	done
	pg_up "$host" "$port" || die "postgres: started but not ready after ${WAIT_SECONDS}s, see $pglog"
	printf '%s\n%s\n%s\n' "$PG_BIN" "$pgdata" "$port" >"$DATA/postgres.started"
	log "postgres: started a private server at $listen:$port (data in $pgdata)"
}

stop_postgres() {
	local f="$DATA/postgres.started" bin pgdata port
	if [ ! -f "$f" ]; then
		log "postgres: not started by this script; left alone"
		return 0
	fi
	{ read -r bin; read -r pgdata; read -r port; } <"$f"
	if [ -f "$pgdata/postmaster.pid" ]; then
		as_pg "$bin/pg_ctl" -D "$pgdata" -m fast -w -t "$WAIT_SECONDS" stop >/dev/null ||
			die "postgres: pg_ctl stop failed for $pgdata"
		log "postgres: stopped the private server on port $port"
	else
		log "postgres: the private server on port $port was not running"
	fi
	rm -f "$f"
}

# ------------------------------------------------------------------------ Redis

redis_up() {
	local host="$1" port="$2" out
	if command -v redis-cli >/dev/null 2>&1; then
		out="$(REDISCLI_AUTH="$U_PASS" timeout 3 redis-cli --no-auth-warning -h "$host" -p "$port" ping 2>/dev/null || true)"
	else
		out="$(timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/$2" || exit 1
			if [ -n "$3" ]; then printf "AUTH %s\r\n" "$3" >&3; read -r _ <&3; fi
			printf "PING\r\n" >&3; read -r line <&3; printf "%s" "$line"' _ "$host" "$port" "$U_PASS" 2>/dev/null || true)"
	fi
	[[ "$out" == *PONG* ]]
}

ensure_redis() {
	parse_url "$REDIS_URL" 6379
	local host="$U_HOST" port="$U_PORT"
	if redis_up "$host" "$port"; then
		log "redis: already running at $host:$port"
		return 0
	fi
	if tcp_open "$host" "$port"; then
		die "redis: something listens on $host:$port but does not answer PING (wrong password in REDIS_URL?)"
	fi
	is_local_host "$host" || die "redis: nothing answers at $host:$port and it is not a local host; start it or fix REDIS_URL"

	if ! command -v redis-server >/dev/null 2>&1; then
		apt_install redis-server || die "redis: redis-server not found and cannot install it (need root + apt-get); install Redis 7"
		if redis_up "$host" "$port"; then
			log "redis: installed; the packaged server now answers at $host:$port"
			return 0
		fi
	fi

	local bind
	case "$host" in
	localhost) bind="127.0.0.1 -::1" ;;
	::1) bind="::1" ;;
	*) bind=127.0.0.1 ;;
	esac
	mkdir -p "$DATA/redis"
	# Keep botfleet's keys (queued tasks, send limits, daily counters): an append-only file
	# survives restarts, and noeviction refuses writes at maxmemory instead of dropping keys.
	# GET /readyz warns about a Redis without them.
	local args=(--daemonize yes --bind $bind --port "$port" --dir "$DATA/redis"
		--save "" --appendonly yes --appendfsync everysec --maxmemory-policy noeviction
		--logfile "$DATA/redis.log" --pidfile "$DATA/redis.pid")
	[ -z "$U_PASS" ] || args+=(--requirepass "$U_PASS")
	log "    starting redis-server on $host:$port (bind $bind, log $DATA/redis.log)"
	redis-server "${args[@]}" || die "redis: redis-server failed to start, see $DATA/redis.log"
	local i
	for ((i = 0; i < WAIT_SECONDS * 2; i++)); do
		redis_up "$host" "$port" && break
		sleep 0.5
	done
	redis_up "$host" "$port" || die "redis: started but no PONG after ${WAIT_SECONDS}s, see $DATA/redis.log"
	for ((i = 0; i < 20; i++)); do [ -s "$DATA/redis.pid" ] && break; sleep 0.1; done
	printf '%s\n' "$port" >"$DATA/redis.started"
	log "redis: started a private server at $host:$port (pid $(cat "$DATA/redis.pid" 2>/dev/null || echo '?'))"
}

stop_redis() {
	local f="$DATA/redis.started" pidf="$DATA/redis.pid" port pid i
	if [ ! -f "$f" ]; then
		log "redis: not started by this script; left alone"
		return 0
	fi
	read -r port <"$f"
	pid="$(cat "$pidf" 2>/dev/null || true)"
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && grep -q redis "/proc/$pid/comm" 2>/dev/null; then
		kill "$pid"
		for ((i = 0; i < WAIT_SECONDS * 10; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -0 "$pid" 2>/dev/null && die "redis: pid $pid did not exit"
		log "redis: stopped the private server on port $port (pid $pid)"
	else
		log "redis: the private server on port $port was not running"
	fi
	rm -f "$f" "$pidf"
}

status() {
	parse_url "$DATABASE_URL" 5432
	if pg_up "$U_HOST" "$U_PORT"; then log "postgres: running at $U_HOST:$U_PORT"; else log "postgres: not answering at $U_HOST:$U_PORT"; fi
	parse_url "$REDIS_URL" 6379
	if redis_up "$U_HOST" "$U_PORT"; then log "redis: running at $U_HOST:$U_PORT"; else log "redis: not answering at $U_HOST:$U_PORT"; fi
}

case "${1:-ensure}" in
ensure)
	ensure_postgres
	ensure_redis
	;;
stop)
	stop_postgres
	stop_redis
	;;
status) status ;;
clean)
	stop_postgres
	stop_redis
	if [ -L "$DATA/postgres" ]; then
		fallback="$(dirname "$(readlink "$DATA/postgres")")"
		case "$fallback" in /var/tmp/botfleet-pg-*) rm -rf "$fallback" ;; esac
	fi
	rm -rf "$DATA"
	log "removed $DATA"
	;;
*) die "usage: $0 ensure|stop|status|clean" ;;
esac
