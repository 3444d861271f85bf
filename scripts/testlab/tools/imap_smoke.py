#!/usr/bin/env python3
"""Smoke test for the lab's Dovecot: LMTP-deliver a message; over IMAPS (TLS verified against the lab CA)
log in, APPEND a second message, find and FETCH both; then IMAP + STARTTLS. Exit 0 only if all worked.
  imap_smoke.py [USER]      (local part, default support)"""
import imaplib, smtplib, ssl, sys, time
from labenv import lab, ca

dom, pw = lab("INFRA_DOMAIN"), lab("TEST_PASSWORD")
user = sys.argv[1] if len(sys.argv) > 1 else "support"
ctx = ssl.create_default_context(cafile=ca())  # server cert: SAN localhost + IP 127.0.0.1

token = f"smoke-{int(time.time() * 1000)}"
msg = f"From: alice@{dom}\r\nTo: {user}@{dom}\r\nSubject: {token}\r\nMessage-ID: <{token}@{dom}>\r\n\r\nbody {token}\r\n"
with smtplib.LMTP("127.0.0.1", lab("LMTP_PORT")) as l:
    l.sendmail(f"alice@{dom}", [f"{user}@{dom}"], msg)

m = imaplib.IMAP4_SSL("127.0.0.1", lab("IMAPS_PORT"), ssl_context=ctx, timeout=15)
m.login(f"{user}@{dom}", pw)
appended = f"From: {user}@{dom}\r\nTo: x@example.org\r\nSubject: {token}-append\r\nMessage-ID: <{token}-a@{dom}>\r\n\r\nappended {token}\r\n"
typ, data = m.append("INBOX", r"(\Seen)", imaplib.Time2Internaldate(time.time()), appended.encode())
assert typ == "OK", ("APPEND failed", typ, data)
typ, data = m.select("INBOX")
print("IMAPS select:", typ, data, "UIDVALIDITY", m.untagged_responses.get("UIDVALIDITY"))
for mid, needle in ((f"<{token}@{dom}>", f"body {token}"), (f"<{token}-a@{dom}>", f"appended {token}")):
    typ, data = m.uid("SEARCH", None, "HEADER", "Message-ID", f'"{mid}"')
    uids = data[0].split()
    assert len(uids) == 1, f"message {mid}: search gave {uids}"
    typ, data = m.uid("FETCH", uids[-1], "(RFC822.SIZE FLAGS BODY.PEEK[])")
    assert needle.encode() in data[0][1], f"{mid}: body not found in fetch"
    print("IMAPS fetch uid", uids[-1].decode(), "ok:", mid)
print("capabilities:", " ".join(m.capabilities))
m.logout()

m2 = imaplib.IMAP4("127.0.0.1", lab("IMAP_PORT"), timeout=15)
m2.starttls(ssl_context=ctx)
m2.login(f"{user}@{dom}", pw)
print("STARTTLS select:", m2.select("INBOX", readonly=True))
m2.logout()
print("SMOKE OK")
