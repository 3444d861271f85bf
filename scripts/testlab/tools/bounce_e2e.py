#!/usr/bin/env python3
"""End-to-end proof: send via the lab's Postfix (STARTTLS, DSN options) -> a real DSN arrives in the sender's
Dovecot INBOX -> parse it. Cases: unknown local user (LMTP 550 -> DSN 'failed'), known user with
NOTIFY=SUCCESS (DSN 'delivered'/'relayed'), hardbounce.test (error transport -> 'failed'), external domain
relayed to the sink (DSN 'relayed'; skipped with SINK=0). It also checks that each 'failed' DSN carries the
original Message-ID (how a client without ENVID correlates). Exit 0 only if every expected DSN is seen.
  bounce_e2e.py [--only-unknown-user]"""
import email, email.utils, imaplib, smtplib, ssl, sys, time, uuid
from email import policy
from labenv import lab, ca

dom, pw = lab("INFRA_DOMAIN"), lab("TEST_PASSWORD")
sender = f"support@{dom}"
ctx = ssl.create_default_context(cafile=ca())
cases = {  # rcpt -> acceptable DSN Action values
    f"nosuchuser-{uuid.uuid4().hex[:6]}@{dom}": {"failed"},
}
if "--only-unknown-user" not in sys.argv:
    # Dovecot LMTP does not announce DSN, so Postfix reports success to it as 'relayed', not 'delivered'
    cases[f"alice@{dom}"] = {"delivered", "relayed"}
    cases["someone@hardbounce.test"] = {"failed"}
    if lab("SINK") != "0":
        cases["customer@example.com"] = {"relayed"}
envids, msgids = {}, {}
with smtplib.SMTP("127.0.0.1", lab("SMTP_PORT"), timeout=15) as s:
    s.starttls(context=ctx); s.ehlo("inboxd-test")
    assert s.has_extn("dsn"), "server lacks DSN"
    for rcpt in cases:
        envid = "inboxd-" + uuid.uuid4().hex
        envids[envid] = rcpt; msgids[envid] = f"<{envid}@{dom}>"
        msg = (f"From: {sender}\r\nTo: {rcpt}\r\nSubject: reply {envid}\r\nMessage-ID: {msgids[envid]}\r\n"
               f"Date: {email.utils.formatdate()}\r\n\r\nhello\r\n")
        s.sendmail(sender, [rcpt], msg, mail_options=[f"ENVID={envid}", "RET=HDRS"],
                   rcpt_options=["NOTIFY=SUCCESS,FAILURE,DELAY", f"ORCPT=rfc822;{rcpt}"])
        print("accepted", rcpt, envid)
deadline, seen = time.time() + 60, {}
while time.time() < deadline and len(seen) < len(cases):
    m = imaplib.IMAP4_SSL("127.0.0.1", lab("IMAPS_PORT"), ssl_context=ctx, timeout=15)
    m.login(sender, pw); m.select("INBOX")
    _, d = m.uid("SEARCH", None, "ALL")
    for uid in d[0].split():
        _, f = m.uid("FETCH", uid, "(BODY.PEEK[])")
        raw = f[0][1]
        msg = email.message_from_bytes(raw, policy=policy.default)
        if msg.get_content_type() != "multipart/report" or msg.get_param("report-type") != "delivery-status":
            continue
        for part in msg.walk():
            if part.get_content_type() == "message/delivery-status":
                blocks = part.get_payload()  # list of Message: [per-message, per-recipient...]
                envid = blocks[0].get("Original-Envelope-Id")
                if envid in envids:
                    for rb in blocks[1:]:
                        seen[envid] = (rb.get("Action"), rb.get("Status"), msgids[envid].encode() in raw)
    m.logout()
    if len(seen) < len(cases): time.sleep(2)
ok = True
for envid, rcpt in envids.items():
    got = seen.get(envid); exp = cases[rcpt]
    good = got is not None and got[0] in exp and (got[0] != "failed" or got[2])
    ok &= good
    print(("OK  " if good else "FAIL"), rcpt, "expected", sorted(exp), "got (action, status, has original Message-ID):", got)
sys.exit(0 if ok else 1)
