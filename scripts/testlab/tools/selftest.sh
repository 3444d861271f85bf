#!/usr/bin/env bash
# Check a running lab end to end (run up.sh first; same env knobs / INFRA_ROOT):
#   IMAPS + STARTTLS login/APPEND/FETCH, LMTP delivery, Postfix DSN bounces into the sender's INBOX,
#   faultproxy (pass-through TLS, stats, refuse), fault.sh (uidvalidity, crash), fake_imap.py, notify_harness.py.
# Prints one line per check and "N passed, N failed"; exit 0 only if all passed.
set -uo pipefail
HERE="$(cd "$(dirname "$0")/.." && pwd)"
source "$HERE/lib.sh"
T="$HERE/tools"; PASS=0; FAIL=0
check() {  # check NAME CMD...: run, keep the output in a log, report
  local name=$1 out; shift
  out=$("$@" 2>&1); local rc=$?
  if [ $rc = 0 ]; then PASS=$((PASS + 1)); echo "ok   $name"; else FAIL=$((FAIL + 1)); echo "FAIL $name (rc=$rc)"; echo "$out" | tail -15 | sed 's/^/     /'; fi
}
py() { PYTHONPATH="$T" python3 "$@"; }
export FAULT="$HERE/dovecot/fault.sh"

check "imap: LMTP deliver, IMAPS login/APPEND/FETCH, STARTTLS" py "$T/imap_smoke.py"
check "postfix: DSN bounces arrive in sender's INBOX" py "$T/bounce_e2e.py"

uidvalidity_flip() {
  py - <<'PY'
import imaplib, ssl, subprocess, os
from labenv import lab, ca
ctx = ssl.create_default_context(cafile=ca())
def uv():
    m = imaplib.IMAP4_SSL("127.0.0.1", lab("IMAPS_PORT"), ssl_context=ctx, timeout=10)
    m.login("support@" + lab("INFRA_DOMAIN"), lab("TEST_PASSWORD")); m.select("INBOX", readonly=True)
    v = m.untagged_responses["UIDVALIDITY"][0]; m.logout(); return int(v)
before = uv()
subprocess.run([os.environ["FAULT"], "uidvalidity", "support", "INBOX", str(before + 7)], check=True, capture_output=True)
after = uv()
assert after == before + 7, (before, after)
print("uidvalidity", before, "->", after)
PY
}
check "fault.sh uidvalidity" uidvalidity_flip

crash_session() {
  py - <<'PY'
import imaplib, ssl, subprocess, os, time
from labenv import lab, ca
ctx = ssl.create_default_context(cafile=ca())
m = imaplib.IMAP4_SSL("127.0.0.1", lab("IMAPS_PORT"), ssl_context=ctx, timeout=10)
m.login("bob@" + lab("INFRA_DOMAIN"), lab("TEST_PASSWORD")); m.select("INBOX")
out = subprocess.run([os.environ["FAULT"], "crash", "bob"], check=True, capture_output=True, text=True).stdout
assert "killed" in out, out
try:
    m.noop(); raise SystemExit("session survived crash")
except (imaplib.IMAP4.abort, OSError) as e:
    print("client saw:", type(e).__name__)
PY
}
check "fault.sh crash (session EOF)" crash_session

if [ "$PROXY" != 0 ]; then
  proxy_check() {
    py - <<'PY' || return 1
import imaplib, ssl
from labenv import lab, ca
ctx = ssl.create_default_context(cafile=ca())
m = imaplib.IMAP4_SSL("127.0.0.1", lab("PROXY_PORT"), ssl_context=ctx, timeout=10)
m.login("support@" + lab("INFRA_DOMAIN"), lab("TEST_PASSWORD")); print(m.select("INBOX", readonly=True)); m.logout()
PY
    "$T/faultctl.sh" stats | grep -q 'accepted=[1-9]' || return 1
    "$T/faultctl.sh" refuse >/dev/null || return 1
    py - <<'PY'; local rc=$?
import imaplib, ssl
from labenv import lab, ca
try:
    imaplib.IMAP4_SSL("127.0.0.1", lab("PROXY_PORT"), ssl_context=ssl.create_default_context(cafile=ca()), timeout=5)
    raise SystemExit("refuse did not refuse")
except (imaplib.IMAP4.abort, OSError) as e:
    print("refused:", type(e).__name__)
PY
    "$T/faultctl.sh" pass >/dev/null; return $rc
  }
  check "faultproxy: TLS pass-through, stats, refuse" proxy_check
fi

fake_imap_check() {
  py - "$T/fake_imap.py" <<'PY'
import imaplib, subprocess, sys
p = subprocess.Popen([sys.executable, sys.argv[1], "--port", "0", "--scenario", "bye-midfetch"], stdout=subprocess.PIPE, text=True)
try:
    port = int(p.stdout.readline().rsplit(":", 1)[1])
    m = imaplib.IMAP4("127.0.0.1", port, timeout=5); m.login("u", "p"); m.select("INBOX")
    try:
        m.fetch("1", "(BODY[])"); raise SystemExit("no BYE")
    except (imaplib.IMAP4.abort, OSError) as e:
        print("fake imap BYE mid-fetch ->", type(e).__name__)
finally:
    p.terminate(); p.wait(5)
PY
}
check "fake_imap.py --port 0 bye-midfetch" fake_imap_check

notify_check() {
  local d; d=$(mktemp -d)
  cat > "$d/daemon.py" <<'PY'
import os, signal, socket, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); a = os.environ["NOTIFY_SOCKET"]
s.sendto(b"READY=1", a); stop = []
signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
while not stop:
    s.sendto(b"WATCHDOG=1", a); time.sleep(0.5)
s.sendto(b"STOPPING=1", a)
PY
  python3 "$T/notify_harness.py" --watchdog-sec 2 --run-for 2 -- python3 "$d/daemon.py"; local rc=$?
  rm -rf "$d"; return $rc
}
check "notify_harness.py (Type=notify + watchdog)" notify_check

echo "$PASS passed, $FAIL failed"
[ $FAIL = 0 ]
