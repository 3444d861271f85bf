#!/usr/bin/env bash
# Stop the private Dovecot started by start.sh: only the master named by THIS lab's pid file
# ($INFRA_ROOT/dovecot/run/master.pid, checked to be /usr/sbin/dovecot) and the children it had.
# GOTCHA: stopping the master does not reliably end running imap sessions (a 30 MB FETCH kept streaming across a
# master restart), so the master's children are collected first and any survivor is killed after it exits.
set -uo pipefail
source "$(cd "$(dirname "$0")/.." && pwd)/lib.sh"
PIDF="$INFRA_ROOT/dovecot/run/master.pid"
PID=$(read_pid "$PIDF")
if ! pid_exe_is "$PID" "/usr/sbin/dovecot"; then rm -f "$PIDF"; say "dovecot not running"; exit 0; fi
KIDS=()
for c in $(children_of "$PID"); do pid_exe_is "$c" "/usr/lib/dovecot/*" && KIDS+=("$c"); done
stop_pids 5 "$PID"
# survivors: only pids that were this master's children and still run a dovecot binary
LEFT=()
for c in "${KIDS[@]}"; do pid_exe_is "$c" "/usr/lib/dovecot/*" && LEFT+=("$c"); done
[ ${#LEFT[@]} -gt 0 ] && { say "ending ${#LEFT[@]} leftover dovecot session process(es)"; stop_pids 3 "${LEFT[@]}"; }
rm -f "$PIDF"; say "dovecot stopped"
