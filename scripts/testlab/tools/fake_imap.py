#!/usr/bin/env python3
"""Scripted misbehaving IMAP server (plaintext, loopback) for client-robustness tests.
  fake_imap.py --port PORT --scenario NAME      (one scenario per listener; serves every connection)
  --port 0 binds a free port; the first stdout line then names it: "fake imap 'NAME' on 127.0.0.1:PORT"
Scenarios (all after a normal greeting + LOGIN OK unless noted):
  garbage-greeting   greeting is random bytes, then close
  no-greeting        accept, never send anything (client connect/greeting timeout)
  huge-literal       FETCH answers BODY[] {4294967295} then closes (must not preallocate / must bound)
  short-literal      announces {1000}, sends 10 bytes, closes (truncated literal)
  no-crlf-flood      sends 64 MiB without CRLF (line-length limit)
  bad-uidvalidity    SELECT returns UIDVALIDITY 0 and UIDNEXT garbage
  uidvalidity-flip   each SELECT returns a different UIDVALIDITY
  bye-midfetch       FETCH answers '* BYE' then closes
  unsolicited-flood  after SELECT, floods 1e6 untagged '* n EXISTS' lines
  nul-bytes          FETCH literal contains NUL + invalid UTF-8 + bare LF
  idle-silent        IDLE gets '+ idling' then the server never speaks again (client must re-IDLE/NOOP)
  slow-drip          every response sent 1 byte per 50 ms"""
import argparse, asyncio, os, re
SC = None
SCENARIOS = ("garbage-greeting", "no-greeting", "huge-literal", "short-literal", "no-crlf-flood", "bad-uidvalidity",
             "uidvalidity-flip", "bye-midfetch", "unsolicited-flood", "nul-bytes", "idle-silent", "slow-drip")
async def send(w, data: bytes):
    if SC == "slow-drip":
        for b in data:
            w.write(bytes([b])); await w.drain(); await asyncio.sleep(0.05)
    else:
        w.write(data); await w.drain()
async def handle(r, w):
    sel = 0
    try:
        if SC == "no-greeting":
            await asyncio.sleep(3600); return
        if SC == "garbage-greeting":
            w.write(os.urandom(512)); await w.drain(); w.close(); return
        await send(w, b"* OK [CAPABILITY IMAP4rev1 IDLE UIDPLUS] fake ready\r\n")
        while True:
            line = await r.readline()
            if not line: return
            m = re.match(rb"(\S+) (UID )?(\S+)", line)
            if not m: continue
            tag, cmd = m.group(1), m.group(3).upper()
            if cmd in (b"LOGIN", b"AUTHENTICATE"):
                await send(w, tag + b" OK LOGIN done\r\n")
            elif cmd == b"CAPABILITY":
                await send(w, b"* CAPABILITY IMAP4rev1 IDLE UIDPLUS\r\n" + tag + b" OK done\r\n")
            elif cmd in (b"SELECT", b"EXAMINE"):
                sel += 1
                uv = b"0" if SC == "bad-uidvalidity" else str(1000 + sel if SC == "uidvalidity-flip" else 1000).encode()
                nxt = b"x9" if SC == "bad-uidvalidity" else b"4"
                await send(w, b"* 3 EXISTS\r\n* 0 RECENT\r\n* OK [UIDVALIDITY " + uv + b"] v\r\n* OK [UIDNEXT " + nxt + b"] n\r\n" + tag + b" OK [READ-WRITE] done\r\n")
                if SC == "unsolicited-flood":
                    for i in range(1_000_000):
                        w.write(b"* %d EXISTS\r\n" % (i + 4))
                        if i % 10000 == 0: await w.drain()
            elif cmd == b"SEARCH":
                await send(w, b"* SEARCH 1 2 3\r\n" + tag + b" OK done\r\n")
            elif cmd == b"FETCH":
                if SC == "huge-literal":
                    await send(w, b"* 1 FETCH (UID 1 BODY[] {4294967295}\r\nabc"); w.close(); return
                if SC == "short-literal":
                    await send(w, b"* 1 FETCH (UID 1 BODY[] {1000}\r\n0123456789"); w.close(); return
                if SC == "no-crlf-flood":
                    for _ in range(1024): w.write(b"A" * 65536); await w.drain()
                    w.close(); return
                if SC == "bye-midfetch":
                    await send(w, b"* BYE going away\r\n"); w.close(); return
                body = b"Subject: x\r\n\r\nhello\r\n"
                if SC == "nul-bytes": body = b"Subject: \xff\xfe\x00bad\nX: y\r\n\r\n\x00\x01\x80\r\n"
                await send(w, b"* 1 FETCH (UID 1 FLAGS () BODY[] {%d}\r\n" % len(body) + body + b")\r\n" + tag + b" OK done\r\n")
            elif cmd == b"IDLE":
                await send(w, b"+ idling\r\n")
                if SC == "idle-silent":
                    await asyncio.sleep(3600); return
                await r.readline(); await send(w, tag + b" OK IDLE done\r\n")
            elif cmd == b"LOGOUT":
                await send(w, b"* BYE\r\n" + tag + b" OK done\r\n"); w.close(); return
            else:
                await send(w, tag + b" OK done\r\n")
    except (ConnectionError, OSError):
        pass
async def main():
    global SC
    ap = argparse.ArgumentParser(); ap.add_argument("--port", type=int, default=10150); ap.add_argument("--scenario", required=True)
    a = ap.parse_args(); SC = a.scenario
    if SC not in SCENARIOS: ap.error(f"unknown scenario {SC!r}; one of: {', '.join(SCENARIOS)}")
    srv = await asyncio.start_server(handle, "127.0.0.1", a.port)
    port = srv.sockets[0].getsockname()[1]
    print(f"fake imap '{SC}' on 127.0.0.1:{port}", flush=True)
    async with srv: await srv.serve_forever()
asyncio.run(main())
