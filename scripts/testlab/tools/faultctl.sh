#!/usr/bin/env bash
# Send one command to faultproxy's control port and print its one-line answer; exit 1 if the answer is an error.
#   faultctl.sh pass | latency MS | bandwidth BPS | blackhole | cut_after N | reset | refuse | garbage N | slicing N | stats
set -euo pipefail
source "$(cd "$(dirname "$0")/.." && pwd)/lib.sh"
[ $# -ge 1 ] || { sed -n '2,3p' "$0"; exit 2; }
exec 3<>"/dev/tcp/127.0.0.1/$PROXY_CONTROL_PORT" || die "faultproxy control 127.0.0.1:$PROXY_CONTROL_PORT not reachable"
echo "$*" >&3
IFS= read -r -t 5 ans <&3 || die "no answer from faultproxy"
echo "$ans"
case "$ans" in error*) exit 1 ;; esac
