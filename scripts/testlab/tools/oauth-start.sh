#!/usr/bin/env bash
# Start the test OAuth2 provider (tools/oauth_server.py: token, authorize and introspection endpoints) detached
# on 127.0.0.1:$OAUTH_PORT. Pid in $INFRA_ROOT/oauth_server.pid. Idempotent; exits non-zero when it cannot listen.
set -euo pipefail
HERE="$(cd "$(dirname "$0")/.." && pwd)"
source "$HERE/lib.sh"
PIDF="$INFRA_ROOT/oauth_server.pid"; LOG="$INFRA_ROOT/oauth_server.log"
PID=$(read_pid "$PIDF")
if pid_cmd_has "$PID" "oauth_server.py"; then say "oauth server already running (pid $PID)"; exit 0; fi
rm -f "$PIDF"
port_free_or_die "$OAUTH_PORT" "oauth server" OAUTH_PORT
mkdir -p "$INFRA_ROOT"
setsid nohup python3 "$HERE/tools/oauth_server.py" --listen "127.0.0.1:$OAUTH_PORT" >"$LOG" 2>&1 </dev/null &
echo $! > "$PIDF"
PID=$(read_pid "$PIDF")
if ! wait_port "$OAUTH_PORT" 10 "$PID"; then
  tail -20 "$LOG" >&2 || true
  die "oauth server did not come up on 127.0.0.1:$OAUTH_PORT (log: $LOG)"
fi
say "oauth server up: pid $PID http://127.0.0.1:$OAUTH_PORT (token, authorize, introspect)"
