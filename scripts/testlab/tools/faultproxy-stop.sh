#!/usr/bin/env bash
# Stop the faultproxy started by faultproxy-start.sh ($INFRA_ROOT/faultproxy.pid, checked to run faultproxy.py).
set -uo pipefail
source "$(cd "$(dirname "$0")/.." && pwd)/lib.sh"
PIDF="$INFRA_ROOT/faultproxy.pid"
PID=$(read_pid "$PIDF")
if pid_cmd_has "$PID" "faultproxy.py"; then stop_pids 5 "$PID"; say "faultproxy stopped"; else say "faultproxy not running"; fi
rm -f "$PIDF"
