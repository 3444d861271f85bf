#!/usr/bin/env bash
# Fresh PostgreSQL databases for tests, on the machine's local cluster (trust auth).
#   pg.sh create NAME   drop NAME if it exists (even with open connections), create it empty; prints its URL
#   pg.sh drop NAME     drop it if it exists
#   pg.sh url NAME      print the URL only
# stdout carries only the URL (URL=$(scripts/testlab/pg.sh create inboxd_test)); messages go to stderr.
# env: PG_HOST (127.0.0.1) PG_PORT (5432) PG_USER (postgres). When the server does not answer on a local
# address, the local cluster is started: pg_ctlcluster --skip-systemctl-redirect <version> main start.
set -euo pipefail
PG_HOST="${PG_HOST:-127.0.0.1}"; PG_PORT="${PG_PORT:-5432}"; PG_USER="${PG_USER:-postgres}"
die() { echo "pg.sh: ERROR: $*" >&2; exit 1; }
usage() { sed -n '2,8p' "$0" >&2; exit 2; }
[ $# = 2 ] || usage
CMD=$1; NAME=$2
# a plain identifier only: it is interpolated into SQL and a URL
[[ "$NAME" =~ ^[a-z_][a-z0-9_]{0,62}$ ]] || die "database name must match [a-z_][a-z0-9_]{0,62}: $NAME"
[ "$NAME" != postgres ] && [[ "$NAME" != template* ]] || die "refusing to touch $NAME"
URL="postgres://$PG_USER@$PG_HOST:$PG_PORT/$NAME"

ready() { pg_isready -q -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -t 2; }
ensure_up() {
  ready && return 0
  case "$PG_HOST" in 127.0.0.1|localhost|::1) ;; *) die "postgres at $PG_HOST:$PG_PORT does not answer" ;; esac
  command -v pg_ctlcluster >/dev/null || die "postgres not answering on $PG_HOST:$PG_PORT and pg_ctlcluster not installed"
  local ver; ver=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -1)
  [ -n "$ver" ] || die "no cluster under /etc/postgresql"
  echo "pg.sh: starting local cluster $ver/main" >&2
  local rc=0
  pg_ctlcluster --skip-systemctl-redirect "$ver" main start >&2 || rc=$?
  # exit 2 = the cluster already runs: then PG_HOST/PG_PORT point elsewhere, waiting would not help
  [ $rc = 2 ] && die "cluster $ver/main already runs but $PG_HOST:$PG_PORT does not answer (wrong PG_PORT?)"
  [ $rc = 0 ] || die "pg_ctlcluster $ver main start failed (exit $rc)"
  for _ in $(seq 1 60); do ready && return 0; sleep 0.5; done
  die "postgres still not answering on $PG_HOST:$PG_PORT after starting cluster $ver/main"
}
export PGOPTIONS="-c client_min_messages=warning"  # no NOTICE for DROP ... IF EXISTS
PSQL=(psql -X -q -v ON_ERROR_STOP=1 -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d postgres)
case "$CMD" in
  create)
    ensure_up
    "${PSQL[@]}" -c "DROP DATABASE IF EXISTS \"$NAME\" WITH (FORCE)" -c "CREATE DATABASE \"$NAME\"" >&2
    echo "$URL" ;;
  drop)
    ensure_up
    "${PSQL[@]}" -c "DROP DATABASE IF EXISTS \"$NAME\" WITH (FORCE)" >&2 ;;
  url) echo "$URL" ;;
  *) usage ;;
esac
