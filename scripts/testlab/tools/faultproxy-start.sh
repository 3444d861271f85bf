#!/usr/bin/env bash
# Start faultproxy detached: 127.0.0.1:$PROXY_PORT -> Dovecot IMAPS (or UPSTREAM given as 1st arg, host:port),
# control on 127.0.0.1:$PROXY_CONTROL_PORT (default PROXY_PORT+1). Pid in $INFRA_ROOT/faultproxy.pid.
# Idempotent; exits non-zero when it cannot listen. Steer it with tools/faultctl.sh.
set -euo pipefail
HERE="$(cd "$(dirname "$0")/.." && pwd)"
source "$HERE/lib.sh"
PIDF="$INFRA_ROOT/faultproxy.pid"; LOG="$INFRA_ROOT/faultproxy.log"
UP="${1:-127.0.0.1:$IMAPS_PORT}"
PID=$(read_pid "$PIDF")
if pid_cmd_has "$PID" "faultproxy.py"; then say "faultproxy already running (pid $PID)"; exit 0; fi
rm -f "$PIDF"
port_free_or_die "$PROXY_PORT" faultproxy PROXY_PORT
port_free_or_die "$PROXY_CONTROL_PORT" "faultproxy control" PROXY_CONTROL_PORT
mkdir -p "$INFRA_ROOT"
# setsid: not in the caller's process group; bash runs a script's background job in the script's group, so
# setsid does not fork and $! is the proxy itself.
setsid nohup python3 "$HERE/tools/faultproxy.py" --listen "127.0.0.1:$PROXY_PORT" --upstream "$UP" \
  --control "127.0.0.1:$PROXY_CONTROL_PORT" >"$LOG" 2>&1 </dev/null &
echo $! > "$PIDF"
PID=$(read_pid "$PIDF")
if ! wait_port "$PROXY_PORT" 10 "$PID" || ! wait_port "$PROXY_CONTROL_PORT" 10 "$PID"; then
  tail -20 "$LOG" >&2 || true
  die "faultproxy did not come up on 127.0.0.1:$PROXY_PORT/$PROXY_CONTROL_PORT (log: $LOG)"
fi
say "faultproxy up: pid $PID 127.0.0.1:$PROXY_PORT -> $UP, control 127.0.0.1:$PROXY_CONTROL_PORT"
