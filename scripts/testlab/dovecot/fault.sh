#!/usr/bin/env bash
# Fault injection against the lab's private Dovecot (acts only on processes of this lab's instance).
# usage:
#   fault.sh who                         list sessions (user proto pid ip)
#   fault.sh kick USER                   server closes USER's sessions ("* BYE Server shutting down.")
#   fault.sh freeze USER                 SIGSTOP USER's imap processes: TCP stays open, server goes silent
#   fault.sh thaw USER                   SIGCONT them
#   fault.sh freeze-all / thaw-all       SIGSTOP/SIGCONT the dovecot master (new logins hang in accept queue)
#   fault.sh crash USER                  SIGKILL USER's imap processes (server crash: EOF mid-response)
#   fault.sh restart                     stop master + kill all sessions + start (mid-FETCH if one runs)
#   fault.sh uidvalidity USER [MBOX] [N] set a new UIDVALIDITY (UIDs kept; clients must resync)
#   fault.sh renumber USER               delete Maildir uidlist: new UIDVALIDITY AND all UIDs renumbered
#   fault.sh recreate USER MBOX          delete + create a (non-INBOX) mailbox: new UIDVALIDITY, empty
#   fault.sh deliver USER FILE           LMTP-deliver an RFC 5322 file (e.g. a malformed MIME sample)
# USER is a local part (support) or a full address. The lab is found through INFRA_ROOT (or
# INBOXD_TEST_INFRA_ROOT from test-env.sh); its ports come from $INFRA_ROOT/lab.env.
set -euo pipefail
HERE="$(cd "$(dirname "$0")/.." && pwd)"
source "$HERE/lib.sh"
[ -f "$DOVECOT_CONF" ] || die "no lab at $INFRA_ROOT (run up.sh, or set INFRA_ROOT)"
DA=(doveadm -c "$DOVECOT_CONF")
full() { case "$1" in *@*) echo "$1" ;; *) echo "$1@$INFRA_DOMAIN" ;; esac; }
local_part() { local a="${1%@*}"; echo "$a"; }
# pids of USER's imap processes, taken from this instance's own doveadm (its base_dir), and checked to be imap
pids_of() {
  local p
  for p in $("${DA[@]}" who -1 "$(full "$1")" 2>/dev/null | awk 'NR>1 && $2=="imap"{print $3}'); do
    pid_exe_is "$p" "/usr/lib/dovecot/imap" && echo "$p"
  done
}
master() {
  local p; p=$(read_pid "$INFRA_ROOT/dovecot/run/master.pid")
  pid_exe_is "$p" "/usr/sbin/dovecot" || die "lab dovecot not running"
  echo "$p"
}
need() { [ $# -ge "$1" ] || { sed -n '2,16p' "$0"; exit 2; }; }
case "${1:-}" in
  who) "${DA[@]}" who -1 ;;
  kick) need 2 "$@"; "${DA[@]}" kick "$(full "$2")" ;;
  freeze) need 2 "$@"; for p in $(pids_of "$2"); do kill -STOP "$p"; echo "stopped $p"; done ;;
  thaw) need 2 "$@"; for p in $(pids_of "$2"); do kill -CONT "$p"; echo "continued $p"; done ;;
  freeze-all) kill -STOP "$(master)"; echo "master stopped" ;;
  thaw-all) kill -CONT "$(master)"; echo "master continued" ;;
  crash) need 2 "$@"; for p in $(pids_of "$2"); do kill -KILL "$p"; echo "killed $p"; done ;;
  restart)
    # GOTCHA: stopping the master does NOT end running imap sessions in practice (a 30 MB FETCH kept
    # streaming across a master restart), so collect session pids first and kill them too.
    P=$("${DA[@]}" who -1 2>/dev/null | awk 'NR>1{print $3}' || true)
    "$HERE/dovecot/stop.sh"
    for p in $P; do pid_exe_is "$p" "/usr/lib/dovecot/*" && kill -KILL "$p" 2>/dev/null && echo "killed session $p" || true; done
    "$HERE/dovecot/start.sh" ;;
  uidvalidity)
    need 2 "$@"; U="$(full "$2")"; MB="${3:-INBOX}"; N="${4:-$(($(date +%s) + RANDOM))}"
    "${DA[@]}" mailbox update --uid-validity "$N" -u "$U" "$MB"
    "${DA[@]}" mailbox status -u "$U" 'uidvalidity uidnext messages' "$MB" ;;
  renumber)
    need 2 "$@"; U="$(full "$2")"; L="$(local_part "$2")"; "${DA[@]}" kick "$U" >/dev/null 2>&1 || true
    rm -f "$INFRA_ROOT/mail/$L/Maildir/dovecot-uidlist" "$INFRA_ROOT/mail/$L/Maildir/dovecot-uidvalidity"*
    rm -f "$INFRA_ROOT/mail/$L/Maildir/dovecot.index"*
    "${DA[@]}" mailbox status -u "$U" 'uidvalidity uidnext messages' INBOX ;;
  recreate)
    need 3 "$@"; U="$(full "$2")"; "${DA[@]}" mailbox delete -u "$U" "$3" 2>/dev/null || true
    "${DA[@]}" mailbox create -u "$U" "$3"; "${DA[@]}" mailbox status -u "$U" 'uidvalidity uidnext' "$3" ;;
  deliver)
    need 3 "$@"; [ -r "$3" ] || die "cannot read $3"
    python3 - "$(full "$2")" "$3" <<'PY'
import os, smtplib, sys
u, f = sys.argv[1], sys.argv[2]
with smtplib.LMTP("127.0.0.1", int(os.environ["LMTP_PORT"])) as l:
    with open(f, "rb") as fh:
        l.sendmail("fault@" + u.split("@")[1], [u], fh.read())
print("delivered", f, "to", u)
PY
    ;;
  *) sed -n '2,16p' "$0"; exit 2 ;;
esac
