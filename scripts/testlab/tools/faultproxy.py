#!/usr/bin/env python3
"""faultproxy: a tiny toxiproxy-like TCP fault injector (stdlib only, asyncio). Loopback only.
  faultproxy.py --listen 127.0.0.1:10994 --upstream 127.0.0.1:10993 --control 127.0.0.1:10995
TLS passes through untouched (it is a byte pipe), so the client still verifies the server cert.
Control: send one line to the control port, get one line back, e.g.
  echo "latency 200" | nc -q1 127.0.0.1 10995      (or: tools/faultctl.sh latency 200)
Commands (apply to NEW and EXISTING connections unless noted):
  pass                 normal forwarding (clears all toxics)
  latency MS           delay each chunk server->client by MS
  bandwidth BPS        throttle server->client to BPS bytes/s (makes 'restart mid-FETCH' deterministic)
  blackhole            keep sockets open but forward nothing (server 'hangs')
  cut_after N          close both sides after N more server->client bytes (truncated literal / mid-FETCH EOF)
  reset                send TCP RST to all current clients now (SO_LINGER 0)
  refuse               new connections are accepted then immediately closed
  garbage N            inject N random bytes into the server->client stream once (broken response)
  slicing N            forward server->client in N-byte pieces (exercises parser resumption across reads)
  stats                connections / bytes so far"""
import argparse, asyncio, os, socket, struct
class S:
    latency = 0.0; bps = 0; blackhole = False; cut_after = None; refuse = False; garbage = 0; slicing = 0
    conns = set(); total = 0; accepted = 0
def reset_state():
    S.latency = 0.0; S.bps = 0; S.blackhole = False; S.cut_after = None; S.refuse = False; S.garbage = 0; S.slicing = 0
async def pipe(r, w, down, peer_w):
    try:
        while True:
            data = await r.read(16384)
            if not data: break
            if down:
                while S.blackhole: await asyncio.sleep(0.05)
                if S.garbage:
                    data = os.urandom(S.garbage) + data; S.garbage = 0
                if S.cut_after is not None:
                    if len(data) >= S.cut_after:
                        w.write(data[:S.cut_after]); await w.drain(); S.cut_after = None
                        w.close(); peer_w.close(); return
                    S.cut_after -= len(data)
                if S.latency: await asyncio.sleep(S.latency)
                pieces = [data[i:i+S.slicing] for i in range(0, len(data), S.slicing)] if S.slicing else [data]
                for p in pieces:
                    if S.bps: await asyncio.sleep(len(p) / S.bps)
                    w.write(p); await w.drain()
                S.total += len(data)
            else:
                while S.blackhole: await asyncio.sleep(0.05)
                w.write(data); await w.drain()
    except (ConnectionError, asyncio.CancelledError, OSError):
        pass
    finally:
        for x in (w, peer_w):
            try: x.close()
            except Exception: pass
async def handle(cr, cw, up):
    S.accepted += 1
    if S.refuse:
        cw.close(); return
    try:
        # small receive buffer upstream so throttled data is NOT pre-buffered in the kernel:
        # a server restart/kill then really happens mid-transfer
        us = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        us.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384); us.setblocking(False)
        await asyncio.get_running_loop().sock_connect(us, up)
        ur, uw = await asyncio.open_connection(sock=us)
    except OSError:
        cw.close(); return
    S.conns.add(cw)
    try:
        await asyncio.gather(pipe(cr, uw, False, cw), pipe(ur, cw, True, uw))
    finally:
        S.conns.discard(cw)
async def control(r, w):
    line = (await r.readline()).decode().split()
    cmd, arg = (line[0] if line else ""), (line[1] if len(line) > 1 else "0")
    out = "ok"
    if cmd == "pass": reset_state()
    elif cmd == "latency": S.latency = float(arg) / 1000
    elif cmd == "bandwidth": S.bps = int(arg)
    elif cmd == "blackhole": S.blackhole = True
    elif cmd == "cut_after": S.cut_after = int(arg)
    elif cmd == "refuse": S.refuse = True
    elif cmd == "garbage": S.garbage = int(arg)
    elif cmd == "slicing": S.slicing = int(arg)
    elif cmd == "reset":
        for cw in list(S.conns):
            sock = cw.get_extra_info("socket")
            try: sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError: pass
            cw.transport.abort()
        out = f"ok reset {len(S.conns)}"
    elif cmd == "stats": out = f"open={len(S.conns)} accepted={S.accepted} bytes_down={S.total}"
    else: out = "error unknown command"
    w.write((out + "\n").encode()); await w.drain(); w.close()
async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", default="127.0.0.1:10994"); ap.add_argument("--upstream", default="127.0.0.1:10993")
    ap.add_argument("--control", default="127.0.0.1:10995")
    a = ap.parse_args()
    hp = lambda s: (s.rsplit(":", 1)[0], int(s.rsplit(":", 1)[1]))
    for s in (a.listen, a.control):
        assert hp(s)[0] in ("127.0.0.1", "::1", "localhost"), "loopback only"
    up = hp(a.upstream)
    srv = await asyncio.start_server(lambda r, w: handle(r, w, up), *hp(a.listen))
    ctl = await asyncio.start_server(control, *hp(a.control))
    print(f"faultproxy {a.listen} -> {a.upstream}, control {a.control}", flush=True)
    async with srv, ctl:
        await asyncio.gather(srv.serve_forever(), ctl.serve_forever())
asyncio.run(main())
