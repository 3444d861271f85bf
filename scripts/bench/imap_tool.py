#!/usr/bin/env python3
"""IMAP helpers for scripts/bench-ingest.sh (stdlib imaplib over implicit TLS, the lab CA).

    imap_tool.py reset  FOLDER        delete FOLDER if it exists, create it empty
    imap_tool.py count  FOLDER        SELECT it (read-only) and print the message count (EXISTS)
    imap_tool.py fetch  FOLDER [--batch 500]
                                      the bare client of the benchmark: UID FETCH BODY.PEEK[] in batches,
                                      print JSON {messages, bytes, seconds} on stdout
    imap_tool.py delete FOLDER        delete FOLDER (missing is fine)

Connection from the environment: BENCH_IMAP_HOST (127.0.0.1), BENCH_IMAP_PORT, BENCH_IMAP_CA, BENCH_IMAP_USER,
BENCH_IMAP_PASSWORD.
"""
import argparse
import imaplib
import json
import os
import ssl
import sys
import time

imaplib._MAXLINE = 10_000_000  # a SEARCH ALL over 50k UIDs is one long line


def connect():
    ctx = ssl.create_default_context(cafile=os.environ["BENCH_IMAP_CA"])
    imap = imaplib.IMAP4_SSL(os.environ.get("BENCH_IMAP_HOST", "127.0.0.1"), int(os.environ["BENCH_IMAP_PORT"]),
                             ssl_context=ctx)
    imap.login(os.environ["BENCH_IMAP_USER"], os.environ["BENCH_IMAP_PASSWORD"])
    return imap


def quoted(folder):
    return '"%s"' % folder.replace("\\", "\\\\").replace('"', '\\"')


def exists(imap, folder):
    typ, data = imap.list('""', quoted(folder))
    return typ == "OK" and any(d is not None for d in data)


def cmd_reset(imap, folder):
    if exists(imap, folder):
        typ, data = imap.delete(quoted(folder))
        if typ != "OK":
            sys.exit("imap_tool: DELETE %s failed: %r" % (folder, data))
    typ, data = imap.create(quoted(folder))
    if typ != "OK":
        sys.exit("imap_tool: CREATE %s failed: %r" % (folder, data))


def cmd_count(imap, folder):
    typ, data = imap.select(quoted(folder), readonly=True)
    if typ != "OK":
        sys.exit("imap_tool: SELECT %s failed: %r" % (folder, data))
    print(int(data[0]))


def cmd_delete(imap, folder):
    if exists(imap, folder):
        typ, data = imap.delete(quoted(folder))
        if typ != "OK":
            sys.exit("imap_tool: DELETE %s failed: %r" % (folder, data))


def cmd_fetch(imap, folder, batch):
    t0 = time.monotonic()
    typ, data = imap.select(quoted(folder), readonly=True)
    if typ != "OK":
        sys.exit("imap_tool: SELECT %s failed: %r" % (folder, data))
    typ, data = imap.uid("SEARCH", "ALL")
    uids = sorted(int(u) for u in data[0].split())
    messages = nbytes = 0
    for i in range(0, len(uids), batch):
        chunk = uids[i:i + batch]
        # A contiguous range covers exactly this chunk of the sorted UID list.
        typ, data = imap.uid("FETCH", "%d:%d" % (chunk[0], chunk[-1]), "(BODY.PEEK[])")
        if typ != "OK":
            sys.exit("imap_tool: UID FETCH failed: %r" % (data,))
        for item in data:
            if isinstance(item, tuple):
                messages += 1
                nbytes += len(item[1])
        del data
    seconds = time.monotonic() - t0
    print(json.dumps({"messages": messages, "bytes": nbytes, "seconds": round(seconds, 3), "batch": batch}))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=["reset", "count", "fetch", "delete"])
    ap.add_argument("folder")
    ap.add_argument("--batch", type=int, default=500)
    a = ap.parse_args()
    imap = connect()
    try:
        if a.command == "fetch":
            cmd_fetch(imap, a.folder, a.batch)
        else:
            {"reset": cmd_reset, "count": cmd_count, "delete": cmd_delete}[a.command](imap, a.folder)
    finally:
        try:
            imap.logout()
        except (imaplib.IMAP4.error, OSError):
            pass


if __name__ == "__main__":
    main()
