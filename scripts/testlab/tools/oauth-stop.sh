#!/usr/bin/env bash
# Stop the test OAuth2 provider started by oauth-start.sh ($INFRA_ROOT/oauth_server.pid, checked to run oauth_server.py).
set -uo pipefail
source "$(cd "$(dirname "$0")/.." && pwd)/lib.sh"
PIDF="$INFRA_ROOT/oauth_server.pid"
PID=$(read_pid "$PIDF")
if pid_cmd_has "$PID" "oauth_server.py"; then stop_pids 5 "$PID"; say "oauth server stopped"; else say "oauth server not running"; fi
rm -f "$PIDF"
