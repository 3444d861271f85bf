#!/usr/bin/env python3
"""Fetch the largest INBOX message (> MIN bytes) of support@ through faultproxy and report how it ended.
Demonstrates mid-FETCH faults (deliver a big one first: dovecot/fault.sh deliver support big.eml).
  fetch_via_proxy.py [TIMEOUT_S] [MIN_BYTES=1000000]
Exit 0 = fetched, 1 = client error (the expected outcome while a fault is active)."""
import imaplib, ssl, sys, time
from labenv import lab, ca

ctx = ssl.create_default_context(cafile=ca())
t = time.time()
try:
    m = imaplib.IMAP4_SSL("127.0.0.1", lab("PROXY_PORT"), ssl_context=ctx,
                          timeout=float(sys.argv[1]) if len(sys.argv) > 1 else 10)
    m.login("support@" + lab("INFRA_DOMAIN"), lab("TEST_PASSWORD"))
    m.select("INBOX")
    _, d = m.uid("SEARCH", None, "LARGER", sys.argv[2] if len(sys.argv) > 2 else "1000000")
    uid = d[0].split()[-1]
    _, f = m.uid("FETCH", uid, "(BODY.PEEK[])")
    print("fetched", len(f[0][1]), "bytes in", round(time.time() - t, 2), "s")
except Exception as e:
    print("client error:", type(e).__name__, str(e)[:120], "after", round(time.time() - t, 2), "s")
    sys.exit(1)
