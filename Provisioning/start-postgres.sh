#!/usr/bin/env bash
# Starts a throwaway PostgreSQL server of the project's own (issue 12), when it is not
# already running: its own data folder, a unix socket in that folder and a loopback port,
# trust authentication for the local user only, no systemd. Used by the test command (the
# hub's suites run a second time against it) and the load benchmark. Prints the URL.
#   BK_PG_DIR   the data folder (default /tmp/benefit-kiosk-postgres)
#   BK_PG_PORT  the port, and the socket's number (default 54329; "auto": a free port,
#               remembered in the folder for the next call)
#   BK_PG_DB    the database created in it (default benefit_kiosk_test)
set -euo pipefail
DIR=${BK_PG_DIR:-/tmp/benefit-kiosk-postgres}
PORT=${BK_PG_PORT:-54329}
if [ "$PORT" = auto ]; then
    if [ -s "$DIR/port" ]; then PORT=$(cat "$DIR/port")
    else PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'); fi
fi
DB=${BK_PG_DB:-benefit_kiosk_test}
BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$BIN/initdb" ] || { echo "PostgreSQL's server is not installed (apt-get install postgresql)" >&2; exit 1; }
# PostgreSQL refuses to run as root: as root, the server runs as the postgres user.
AS=(); OWNER=$(id -un)
if [ "$(id -u)" -eq 0 ]; then AS=(runuser -u postgres --); OWNER=postgres; fi
URL="postgres://$OWNER@/$DB?host=$DIR"
ready() { "${AS[@]}" "$BIN/pg_isready" -q -h "$DIR" -p "$PORT" 2>/dev/null; }
if ! ready; then
    if [ ! -s "$DIR/data/PG_VERSION" ]; then
        rm -rf "$DIR"
        mkdir -p "$DIR"
        chown "$OWNER" "$DIR"
        "${AS[@]}" "$BIN/initdb" -D "$DIR/data" -U "$OWNER" --auth=trust --locale=C.UTF-8 --encoding=UTF8 >"$DIR/initdb.log" 2>&1 \
            || { cat "$DIR/initdb.log" >&2; exit 1; }
    fi
    echo "$PORT" >"$DIR/port"
    # Durable as production (fsync on); small shared buffers fit a shared build machine. A
    # folder left by a killed server recovers first (minutes for a large one): wait for it.
    "${AS[@]}" "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 600 \
        -o "-k $DIR -p $PORT -c listen_addresses=127.0.0.1 -c max_connections=300 -c shared_buffers=128MB" start >/dev/null \
        || { tail -20 "$DIR/server.log" >&2; exit 1; }
fi
ready || { echo "PostgreSQL did not start (see $DIR/server.log)" >&2; exit 1; }
if ! "${AS[@]}" "$BIN/psql" -h "$DIR" -p "$PORT" -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB'" | grep -q 1; then
    "${AS[@]}" "$BIN/createdb" -h "$DIR" -p "$PORT" "$DB"
fi
if [ "$PORT" != 5432 ]; then URL="postgres://$OWNER@:$PORT/$DB?host=$DIR"; fi
echo "$URL"
