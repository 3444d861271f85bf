#!/usr/bin/env bash
# Stop the private Postfix started by start.sh: only the master named by THIS lab's pid file
# ($INFRA_ROOT/postfix/spool/pid/master.pid, checked to be Postfix's master) and the children it had.
set -uo pipefail
source "$(cd "$(dirname "$0")/.." && pwd)/lib.sh"
R="$INFRA_ROOT/postfix"
PID=$(read_pid "$R/spool/pid/master.pid")
if ! pid_exe_is "$PID" "/usr/lib/postfix/sbin/master"; then say "postfix not running"; exit 0; fi
KIDS=()
for c in $(children_of "$PID"); do pid_exe_is "$c" "/usr/lib/postfix/sbin/*" && KIDS+=("$c"); done
# `postfix -c DIR stop` signals the master of that config's queue directory (the same pid file) and waits;
# if it cannot, fall back to signalling the pid ourselves.
postfix -c "$R/etc" stop >/dev/null 2>&1 || true
pid_exe_is "$PID" "/usr/lib/postfix/sbin/master" && stop_pids 5 "$PID"
LEFT=()
for c in "${KIDS[@]}"; do pid_exe_is "$c" "/usr/lib/postfix/sbin/*" && LEFT+=("$c"); done
[ ${#LEFT[@]} -gt 0 ] && stop_pids 3 "${LEFT[@]}"
say "postfix stopped"
