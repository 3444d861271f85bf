#!/usr/bin/env bash
# Stop the sink started by sink/start.sh (the pid in $INFRA_ROOT/sink/sink.pid, checked to run smtp_sink.py).
set -uo pipefail
source "$(cd "$(dirname "$0")/.." && pwd)/lib.sh"
PIDF="$INFRA_ROOT/sink/sink.pid"
PID=$(read_pid "$PIDF")
if pid_cmd_has "$PID" "smtp_sink.py"; then stop_pids 5 "$PID"; say "sink stopped"; else say "sink not running"; fi
rm -f "$PIDF"
