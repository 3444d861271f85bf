#!/usr/bin/env python3
"""Minimal SMTP sink (aiosmtpd) on 127.0.0.1:$SINK_PORT. The lab's Postfix relays every domain that is not a
test domain here. Writes each accepted message to $INFRA_ROOT/sink/<ms>-<n>.eml plus a JSON line in
$INFRA_ROOT/sink/index.jsonl.
Fault knobs via env: SINK_REJECT_RCPT=substr (550 for matching RCPT), SINK_TEMPFAIL_RCPT=substr (451),
SINK_DELAY_DATA=seconds (sleep before answering DATA, to trigger client timeouts).
aiosmtpd comes from Debian (python3-aiosmtpd, install.sh) or a venv with PyPI's aiosmtpd (sink/start.sh)."""
import asyncio, json, os, signal, threading, time
from aiosmtpd.controller import Controller

root = os.environ.get("INFRA_ROOT", "/tmp/inboxd-infra") + "/sink"
os.makedirs(root, exist_ok=True)
REJ, TMP = os.environ.get("SINK_REJECT_RCPT"), os.environ.get("SINK_TEMPFAIL_RCPT")
DELAY = float(os.environ.get("SINK_DELAY_DATA", "0"))


class H:
    n = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if REJ and REJ in address:
            return "550 5.1.1 sink: no such user"
        if TMP and TMP in address:
            return "451 4.3.0 sink: try again later"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if DELAY:
            await asyncio.sleep(DELAY)
        H.n += 1
        p = f"{root}/{int(time.time() * 1000)}-{H.n}.eml"
        with open(p, "wb") as f:
            f.write(envelope.original_content or envelope.content)
        with open(f"{root}/index.jsonl", "a") as f:
            f.write(json.dumps({"file": p, "from": envelope.mail_from, "to": envelope.rcpt_tos,
                                "mail_options": envelope.mail_options,
                                "rcpt_options": envelope.rcpt_options}) + "\n")
        return "250 2.0.0 queued as sink-%d" % H.n


port = int(os.environ.get("SINK_PORT", "10026"))
c = Controller(H(), hostname="127.0.0.1", port=port)
c.start()
print(f"sink listening 127.0.0.1:{port} -> {root}", flush=True)
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
signal.signal(signal.SIGINT, lambda *_: stop.set())
stop.wait()
c.stop()
