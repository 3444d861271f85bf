#!/usr/bin/env bash
# Bring up the whole loopback mail lab: Dovecot (IMAP/IMAPS/LMTP) + Postfix (SMTP, real DSNs) + SMTP sink
# (optional, SINK=0 skips) + faultproxy in front of IMAPS (optional, PROXY=0 skips). Idempotent. Run as root.
# Installs missing Debian packages first (install.sh; INSTALL=0 skips that step).
# On success writes $INFRA_ROOT/test-env.sh (source it: INBOXD_TEST_* for the Rust tests) and exits 0.
# If any server cannot start it prints why and exits non-zero (what did start is left running for
# inspection; down.sh stops it).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
source "$HERE/lib.sh"
T0=$(date +%s%N)
trap 'echo "testlab: ERROR: up.sh failed (see above); logs under $INFRA_ROOT; stop what started with: INFRA_ROOT=$INFRA_ROOT $HERE/down.sh" >&2' ERR
[ "${INSTALL:-1}" = 0 ] || "$HERE/install.sh"
need_root
mkdir -p "$INFRA_ROOT"
# marker: down.sh --wipe deletes only a folder that carries it
[ -f "$INFRA_ROOT/.inboxd-testlab" ] || echo "inboxd test lab state; delete with scripts/testlab/down.sh --wipe" > "$INFRA_ROOT/.inboxd-testlab"
# save the knobs so later calls with only INFRA_ROOT (fault.sh restart, down.sh) act on the same ports
for k in $LAB_SAVED_KNOBS; do printf '%s=%s\n' "$k" "${!k}"; done > "$INFRA_ROOT/lab.env.tmp"
mv "$INFRA_ROOT/lab.env.tmp" "$INFRA_ROOT/lab.env"

if [ "$OAUTH" != 0 ]; then
  "$HERE/tools/oauth-start.sh"
  export OAUTH2_INTROSPECTION_URL="${OAUTH2_INTROSPECTION_URL:-http://127.0.0.1:$OAUTH_PORT/introspect}"
else say "oauth server skipped (OAUTH=0)"; fi
"$HERE/dovecot/start.sh"
if [ "$SINK" != 0 ]; then "$HERE/sink/start.sh"; else say "sink skipped (SINK=0): mail to non-test domains stays deferred"; fi
"$HERE/postfix/start.sh"
if [ "$PROXY" != 0 ]; then "$HERE/tools/faultproxy-start.sh"; else say "faultproxy skipped (PROXY=0)"; fi

{
  echo "# written by scripts/testlab/up.sh for INFRA_ROOT=$INFRA_ROOT; source it before running the tests"
  echo "export INBOXD_TEST_INFRA_ROOT='$INFRA_ROOT'"
  echo "export INBOXD_TEST_DOMAIN='$INFRA_DOMAIN'"
  echo "export INBOXD_TEST_IMAP_HOST='127.0.0.1'"
  echo "export INBOXD_TEST_IMAP_PORT='$IMAP_PORT'      # plaintext + STARTTLS"
  echo "export INBOXD_TEST_IMAPS_PORT='$IMAPS_PORT'    # implicit TLS"
  echo "export INBOXD_TEST_IMAP_CA='$INFRA_ROOT/dovecot/tls/ca.pem'  # trust anchor; server cert SAN: localhost, 127.0.0.1"
  echo "export INBOXD_TEST_IMAP_USER='support@$INFRA_DOMAIN'"
  echo "export INBOXD_TEST_IMAP_USERS='$(for u in $TEST_USERS; do printf '%s@%s ' "$u" "$INFRA_DOMAIN"; done | sed 's/ $//')'"
  echo "export INBOXD_TEST_IMAP_PASSWORD='$TEST_PASSWORD'  # same for every user"
  echo "export INBOXD_TEST_SMTP_HOST='127.0.0.1'"
  echo "export INBOXD_TEST_SMTP_PORT='$SMTP_PORT'      # Postfix, STARTTLS (same CA), DSN"
  echo "export INBOXD_TEST_LMTP_PORT='$LMTP_PORT'      # Dovecot LMTP: inject mail directly"
  echo "export INBOXD_TEST_POSTFIX_LOG='$INFRA_ROOT/postfix/log/maillog'"
  echo "export INBOXD_TEST_FAULT_SH='$HERE/dovecot/fault.sh'"
  echo "export INBOXD_TEST_FAKE_IMAP='$HERE/tools/fake_imap.py'"
  echo "export INBOXD_TEST_NOTIFY_HARNESS='$HERE/tools/notify_harness.py'"
  echo "export INBOXD_TEST_SUBMISSION_PORT='$SUBMISSION_PORT'  # Postfix, STARTTLS required, SASL through Dovecot (XOAUTH2/OAUTHBEARER/PLAIN)"
  if [ "$OAUTH" != 0 ]; then
    echo "export INBOXD_TEST_OAUTH_URL='http://127.0.0.1:$OAUTH_PORT'  # tools/oauth_server.py: /token /authorize /introspect /control/*"
  fi
  if [ "$SINK" != 0 ]; then
    echo "export INBOXD_TEST_SINK_PORT='$SINK_PORT'"
    echo "export INBOXD_TEST_SINK_DIR='$INFRA_ROOT/sink'  # <ms>-<n>.eml + index.jsonl"
  fi
  if [ "$PROXY" != 0 ]; then
    echo "export INBOXD_TEST_PROXY_PORT='$PROXY_PORT'    # faultproxy -> IMAPS (TLS passes through)"
    echo "export INBOXD_TEST_PROXY_CONTROL_PORT='$PROXY_CONTROL_PORT'"
    echo "export INBOXD_TEST_FAULTCTL='$HERE/tools/faultctl.sh'"
  fi
} > "$TEST_ENV_FILE.tmp"
mv "$TEST_ENV_FILE.tmp" "$TEST_ENV_FILE"
say "lab up in $(( ($(date +%s%N) - T0) / 1000000 )) ms; test env: source $TEST_ENV_FILE"
