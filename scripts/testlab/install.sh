#!/usr/bin/env bash
# Install the Debian packages the lab needs. Idempotent: when every package is installed it does nothing
# (no apt-get at all, a few ms). Run as root on Debian 12.
#   packages: dovecot-imapd dovecot-lmtpd postfix openssl python3 (+ python3-aiosmtpd for the sink unless SINK=0)
#   env: SINK=0 (skip the sink's package), APT_RETRIES (default 20), APT_LOCK_TIMEOUT (seconds, default 120)
# The stock dovecot/postfix services are never started by the lab; on a machine without
# /usr/sbin/policy-rc.d a temporary one (exit 101) keeps the package scripts from starting them.
set -euo pipefail
PKGS=(dovecot-imapd dovecot-lmtpd postfix openssl python3)
# Debian's own aiosmtpd (1.4.3) keeps the sink off PyPI; sink/start.sh falls back to a venv + PyPI without it.
[ "${SINK:-1}" = 0 ] || PKGS+=(python3-aiosmtpd)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
done
if [ ${#missing[@]} = 0 ]; then echo "testlab: packages already installed"; exit 0; fi
[ "$(id -u)" = 0 ] || { echo "testlab: ERROR: need root to install: ${missing[*]}" >&2; exit 1; }
echo "testlab: installing ${missing[*]}"

# Postfix asks which kind of mail system it is: "Local only" writes a harmless main.cf for the stock
# instance (which we never start; the lab runs its own with postfix -c).
echo "postfix postfix/main_mailer_type select Local only" | debconf-set-selections
export DEBIAN_FRONTEND=noninteractive

PRC=/usr/sbin/policy-rc.d
if [ ! -e "$PRC" ]; then
  printf '#!/bin/sh\n# temporary, written by inboxd scripts/testlab/install.sh\nexit 101\n' > "$PRC"; chmod 755 "$PRC"
fi

LOCK_TIMEOUT="${APT_LOCK_TIMEOUT:-120}"
APT=(apt-get -q -y -o "DPkg::Lock::Timeout=$LOCK_TIMEOUT" -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
LOG=$(mktemp); trap 'rm -f "$LOG"; [ -f "$PRC" ] && grep -q "testlab/install.sh" "$PRC" && rm -f "$PRC"; true' EXIT
# Another apt/dpkg (unattended-upgrades, a parallel builder) may hold the locks: Lock::Timeout waits for
# the dpkg lock, the retry loop covers the lists lock of `apt-get update` and anything else lock-shaped.
run_apt() {
  local i
  for ((i = 1; i <= ${APT_RETRIES:-20}; i++)); do
    if "${APT[@]}" "$@" > "$LOG" 2>&1; then return 0; fi
    if grep -qiE 'could not get lock|unable to acquire the dpkg frontend lock|unable to lock|is another process using it' "$LOG"; then
      echo "testlab: apt lock busy (try $i), retrying in 5 s"; sleep 5; continue
    fi
    cat "$LOG" >&2; return 1
  done
  cat "$LOG" >&2; echo "testlab: ERROR: apt lock still busy after ${APT_RETRIES:-20} tries" >&2; return 1
}
run_apt update
run_apt install "${missing[@]}"
tail -3 "$LOG"
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' \
    || { echo "testlab: ERROR: $p still not installed" >&2; exit 1; }
done
echo "testlab: packages installed"
