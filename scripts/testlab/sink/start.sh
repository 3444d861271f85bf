#!/usr/bin/env bash
# Start the SMTP sink (sink/smtp_sink.py, aiosmtpd) on 127.0.0.1:$SINK_PORT, detached, pid in $INFRA_ROOT/sink/sink.pid.
# Optional part of the lab: up.sh skips it with SINK=0. aiosmtpd is looked for in this order:
#   $SINK_PYTHON (if set) > /usr/bin/python3 with Debian's python3-aiosmtpd (install.sh) > python3 on PATH >
#   a venv $INFRA_ROOT/venv with aiosmtpd==1.4.6 from PyPI (needs network; created once).
# Knobs for the sink itself: SINK_REJECT_RCPT, SINK_TEMPFAIL_RCPT, SINK_DELAY_DATA (see smtp_sink.py).
set -euo pipefail
HERE="$(cd "$(dirname "$0")/.." && pwd)"
source "$HERE/lib.sh"
S="$INFRA_ROOT/sink"; PIDF="$S/sink.pid"
PID=$(read_pid "$PIDF")
if pid_cmd_has "$PID" "smtp_sink.py"; then say "sink already running (pid $PID)"; exit 0; fi
rm -f "$PIDF"
port_free_or_die "$SINK_PORT" sink SINK_PORT
mkdir -p "$S"

PY=""
for cand in ${SINK_PYTHON:-} /usr/bin/python3 python3 "$INFRA_ROOT/venv/bin/python"; do
  if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import aiosmtpd' 2>/dev/null; then PY=$(command -v "$cand"); break; fi
done
if [ -z "$PY" ]; then
  say "aiosmtpd not found; creating $INFRA_ROOT/venv from PyPI (SINK=0 skips the sink)"
  { python3 -m venv "$INFRA_ROOT/venv" && "$INFRA_ROOT/venv/bin/pip" install -q 'aiosmtpd==1.4.6'; } >"$S/venv.log" 2>&1 \
    || { tail -5 "$S/venv.log" >&2; die "cannot install aiosmtpd for the sink (install python3-aiosmtpd, or SINK=0)"; }
  PY="$INFRA_ROOT/venv/bin/python"
fi

# setsid: own session, so the caller's terminal/process group going away does not take the sink with it.
# (bash runs a background job of a script in the script's process group, so setsid does not fork: $! is the sink)
setsid nohup "$PY" "$HERE/sink/smtp_sink.py" >"$S/sink.log" 2>&1 </dev/null &
echo $! > "$PIDF"
PID=$(read_pid "$PIDF")
if ! wait_port "$SINK_PORT" 10 "$PID"; then
  tail -20 "$S/sink.log" >&2 || true
  die "sink did not come up on 127.0.0.1:$SINK_PORT (log: $S/sink.log)"
fi
say "sink up: pid $PID 127.0.0.1:$SINK_PORT ($PY) -> $S"
