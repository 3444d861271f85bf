# shellcheck shell=bash
# Settings of the inboxd loopback mail lab (sourced by every lab script; safe to source from a shell).
# Every knob can be overridden from the environment. Everything lives under $INFRA_ROOT and listens on
# 127.0.0.1 only, so two labs with different INFRA_ROOT and ports can run side by side.
#
# Precedence for each knob: the caller's environment > the values saved by the last up.sh of this INFRA_ROOT
# ($INFRA_ROOT/lab.env, so `INFRA_ROOT=/x dovecot/fault.sh restart` reuses that lab's ports) > the defaults below.

# A test process that only got the INBOXD_TEST_* variables of test-env.sh still finds its lab.
INFRA_ROOT="${INFRA_ROOT:-${INBOXD_TEST_INFRA_ROOT:-/tmp/inboxd-infra}}"
case "$INFRA_ROOT" in /*) ;; *) INFRA_ROOT="$(pwd)/$INFRA_ROOT" ;; esac  # dovecot/postfix need absolute paths
INFRA_ROOT="${INFRA_ROOT%/}"
export INFRA_ROOT

# Knobs saved by up.sh (one KEY=VALUE per line, raw value) fill in what the caller did not set.
LAB_SAVED_KNOBS="INFRA_DOMAIN IMAP_PORT IMAPS_PORT LMTP_PORT SMTP_PORT SINK_PORT PROXY_PORT PROXY_CONTROL_PORT OAUTH_PORT SUBMISSION_PORT TEST_PASSWORD TEST_USERS SINK PROXY OAUTH"
if [ -f "$INFRA_ROOT/lab.env" ]; then
  while IFS='=' read -r _k _v; do
    case " $LAB_SAVED_KNOBS " in *" $_k "*) ;; *) continue ;; esac
    [ -n "${!_k+x}" ] || export "$_k=$_v"
  done < "$INFRA_ROOT/lab.env"
  unset _k _v
fi

export INFRA_DOMAIN="${INFRA_DOMAIN:-inboxd.test}"
export IMAP_PORT="${IMAP_PORT:-10143}"      # Dovecot IMAP (plaintext, STARTTLS available)
export IMAPS_PORT="${IMAPS_PORT:-10993}"    # Dovecot IMAP over implicit TLS
export LMTP_PORT="${LMTP_PORT:-10024}"      # Dovecot LMTP (Postfix delivers here; fault.sh deliver too)
export SMTP_PORT="${SMTP_PORT:-10025}"      # Postfix smtpd (the daemon under test submits here)
export SINK_PORT="${SINK_PORT:-10026}"      # aiosmtpd sink: Postfix relays every non-test domain here
export PROXY_PORT="${PROXY_PORT:-10994}"    # faultproxy in front of IMAPS
# control port of faultproxy; FAULT_CONTROL_PORT is the shared lab's old name for it
export PROXY_CONTROL_PORT="${PROXY_CONTROL_PORT:-${FAULT_CONTROL_PORT:-$((PROXY_PORT + 1))}}"
export FAULT_CONTROL_PORT="$PROXY_CONTROL_PORT"
export OAUTH_PORT="${OAUTH_PORT:-$((IMAP_PORT - 63))}"   # test OAuth2 provider (10080 by default)
export SUBMISSION_PORT="${SUBMISSION_PORT:-$((SMTP_PORT + 562))}"  # Postfix smtpd with SASL through Dovecot (10587)
export OAUTH="${OAUTH:-1}"                  # 0 = no test OAuth2 provider (Dovecot then offers no XOAUTH2/OAUTHBEARER)
export TEST_PASSWORD="${TEST_PASSWORD:-secret}"
export TEST_USERS="${TEST_USERS:-support alice bob}"
export SINK="${SINK:-1}"                    # 0 = no SMTP sink (no aiosmtpd needed); mail to other domains then stays deferred
export PROXY="${PROXY:-1}"                  # 0 = no faultproxy

# Derived paths (not knobs).
export DOVECOT_CONF="$INFRA_ROOT/dovecot/etc/dovecot.conf"
export POSTFIX_CONF_DIR="$INFRA_ROOT/postfix/etc"
export TEST_ENV_FILE="$INFRA_ROOT/test-env.sh"
# Dovecot registers every instance by instance_name; two labs must not share one, so derive it from
# INFRA_ROOT (base_dir, pid file and sockets already live under INFRA_ROOT).
DOVECOT_INSTANCE="inboxd-test-$(printf '%s' "$INFRA_ROOT" | cksum | cut -d' ' -f1)"
export DOVECOT_INSTANCE
