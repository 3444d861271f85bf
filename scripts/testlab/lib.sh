# shellcheck shell=bash
# Helpers shared by the lab scripts (sourced, not run). Sources env.sh.
# Rule kept by every helper here: a process is only signalled when a pid file of THIS lab names it AND the
# process still is what we started (its executable or command line is checked), so a reused pid or another
# lab's (or the stock) Dovecot/Postfix is never touched.
LAB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=env.sh
source "$LAB_DIR/env.sh"

say() { echo "testlab: $*"; }
die() { echo "testlab: ERROR: $*" >&2; exit 1; }

# port_open PORT: something accepts TCP on 127.0.0.1:PORT (a refused connect fails at once, no timeout needed)
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# port_free_or_die PORT WHAT: fail with a clear message when another process already listens there
port_free_or_die() {
  port_open "$1" || return 0
  local who=""
  command -v ss >/dev/null 2>&1 && who=$(ss -ltnpH "sport = :$1" 2>/dev/null | sed 's/.*users://' | head -1)
  die "127.0.0.1:$1 ($2) is already in use${who:+ by $who}; pick another port (env $3) or stop that process"
}

# wait_port PORT SECONDS [PID]: wait until the port accepts; fail early if PID died
wait_port() {
  local port=$1 tenths=$(($2 * 10)) pid=${3:-} i
  for ((i = 0; i < tenths; i++)); do
    port_open "$port" && return 0
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then return 1; fi
    sleep 0.1
  done
  return 1
}

# read_pid FILE: the pid in a pid file (postfix pads it with spaces), empty if none
read_pid() { [ -f "$1" ] && tr -dc '0-9' < "$1" || true; }

# pid_exe_is PID GLOB: PID is alive and its executable matches GLOB (e.g. /usr/sbin/dovecot)
pid_exe_is() {
  local exe
  [ -n "$1" ] && exe=$(readlink "/proc/$1/exe" 2>/dev/null) || return 1
  # shellcheck disable=SC2053
  [[ "$exe" == $2 ]]
}

# pid_cmd_has PID TEXT: PID is alive and its command line contains TEXT
pid_cmd_has() {
  [ -n "$1" ] && [ -r "/proc/$1/cmdline" ] || return 1
  tr '\0' ' ' < "/proc/$1/cmdline" 2>/dev/null | grep -qF -- "$2"
}

# children_of PID: direct children (collected BEFORE stopping a master, whose children get re-parented).
# Reads /proc itself: minimal Debian images lack procps (ps).
children_of() {
  local parent=$1 f st ppid
  for f in /proc/[0-9]*/stat; do
    st=$(< "$f") 2>/dev/null || continue
    read -r _ ppid _ <<< "${st##*) }"  # fields after "(comm) ": state ppid ...
    if [ "$ppid" = "$parent" ]; then f=${f#/proc/}; echo "${f%/stat}"; fi
  done
  return 0
}

# pid_running PID: alive and not a zombie (our daemons are re-parented to PID 1, which may reap them late)
pid_running() {
  local st
  st=$(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

# stop_pids SECONDS PID...: SIGTERM, wait up to SECONDS, then SIGKILL the survivors
stop_pids() {
  local secs=$1 p alive i; shift
  [ $# -gt 0 ] || return 0
  kill -TERM "$@" 2>/dev/null || true
  for ((i = 0; i < secs * 20; i++)); do
    alive=0; for p in "$@"; do pid_running "$p" && alive=1; done
    [ $alive = 0 ] && return 0
    sleep 0.05
  done
  for p in "$@"; do pid_running "$p" && { say "pid $p still alive, sending KILL"; kill -KILL "$p" 2>/dev/null || true; }; done
  return 0
}

# write_if_changed FILE < content: replace FILE only when the content differs. Postfix's start takes ~2 s more
# when its config files are newer than its last start, so unchanged configs are left untouched.
write_if_changed() {
  cat > "$1.new"
  if cmp -s "$1.new" "$1"; then rm -f "$1.new"; else mv "$1.new" "$1"; fi
}

# need_root: the servers drop privileges to their own users, which only root can do
need_root() { [ "$(id -u)" = 0 ] || die "run as root (Dovecot and Postfix switch to their own users)"; }
