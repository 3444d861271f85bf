#!/usr/bin/env bash
# Stop everything up.sh started for this INFRA_ROOT, each part by its own pid file (see the stop scripts).
# Never touches another lab's or the stock Dovecot/Postfix. Add --wipe to also delete $INFRA_ROOT (only if it
# carries up.sh's marker file). Exits non-zero if a lab port is still answering afterwards.
set -uo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
source "$HERE/lib.sh"
"$HERE/tools/faultproxy-stop.sh"
"$HERE/postfix/stop.sh"
"$HERE/sink/stop.sh"
"$HERE/dovecot/stop.sh"
"$HERE/tools/oauth-stop.sh"
rm -f "$TEST_ENV_FILE"
rc=0
for p in "$IMAP_PORT" "$IMAPS_PORT" "$LMTP_PORT" "$SMTP_PORT" "$SINK_PORT" "$PROXY_PORT" "$PROXY_CONTROL_PORT" "$OAUTH_PORT" "$SUBMISSION_PORT"; do
  port_open "$p" && { echo "testlab: WARNING: 127.0.0.1:$p still answers (not this lab's process?)" >&2; rc=1; }
done
if [ "${1:-}" = "--wipe" ]; then
  if [ -f "$INFRA_ROOT/.inboxd-testlab" ]; then rm -rf "$INFRA_ROOT" && say "wiped $INFRA_ROOT"
  elif [ -e "$INFRA_ROOT" ]; then echo "testlab: not wiping $INFRA_ROOT: no .inboxd-testlab marker" >&2; rc=1
  fi
fi
exit $rc
