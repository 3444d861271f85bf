#!/usr/bin/env python3
"""Print the result table of scripts/bench-ingest.sh and write it as JSON.

    report.py --run-dir DIR --count N --total-bytes B [--json-out FILE]

Reads DIR/a.time, DIR/b.time (GNU `/usr/bin/time -v` output), DIR/a.wall, DIR/b.wall (seconds, measured
by the caller around the process), DIR/a.json (the bare client's own report) and DIR/b.json (the output of
`inboxd sync --once --json`). Rates use the whole process's wall time, start to exit, for both sides.
MB = 10^6 bytes. Exit status 0 when both targets are met, 3 when one is missed, 2 when a run is incomplete.
"""
import argparse
import json
import os
import re
import sys

TARGET_RATIO = 0.60
TARGET_RSS_MB = 256


def time_v(path):
    out = {}
    with open(path) as f:
        for line in f:
            m = re.match(r"\s*(.+?):\s*(.*)$", line)
            if m:
                out[m.group(1)] = m.group(2)
    return {
        "rss_mb": int(out.get("Maximum resident set size (kbytes)", "0")) / 1024,
        "user_s": float(out.get("User time (seconds)", "0")),
        "sys_s": float(out.get("System time (seconds)", "0")),
        "cpu_pct": out.get("Percent of CPU this job got", "?"),
        "exit": int(out.get("Exit status", "-1")),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--total-bytes", type=int, required=True)
    ap.add_argument("--json-out")
    a = ap.parse_args()
    d = a.run_dir
    sides, problems = {}, []
    for side in ("a", "b"):
        r = time_v(os.path.join(d, side + ".time"))
        with open(os.path.join(d, side + ".wall")) as f:
            r["wall_s"] = float(f.read().strip())
        r["msg_s"] = a.count / r["wall_s"]
        r["mb_s"] = a.total_bytes / 1e6 / r["wall_s"]
        sides[side] = r
    try:
        with open(os.path.join(d, "a.json")) as f:
            bare = json.load(f)
        sides["a"]["messages"] = bare["messages"]
        sides["a"]["bytes"] = bare["bytes"]
        if bare["messages"] != a.count or bare["bytes"] != a.total_bytes:
            problems.append("bare client got %d messages / %d bytes, expected %d / %d"
                            % (bare["messages"], bare["bytes"], a.count, a.total_bytes))
    except (OSError, ValueError, KeyError) as e:
        problems.append("bare client report unreadable: %s" % e)
    try:
        with open(os.path.join(d, "b.json")) as f:
            reports = json.load(f)
        stored = sum(r.get("stored", 0) for r in reports)
        sides["b"].update(fetched=sum(r.get("fetched", 0) for r in reports), stored=stored,
                          duplicates=sum(r.get("duplicates", 0) for r in reports),
                          flagged=sum(r.get("flagged", 0) for r in reports),
                          errors=[r["error"] for r in reports if r.get("error")])
        if stored != a.count:
            problems.append("inboxd stored %d of %d messages" % (stored, a.count))
        if sides["b"]["errors"]:
            problems.append("inboxd reported errors: %s" % "; ".join(sides["b"]["errors"]))
    except (OSError, ValueError, TypeError) as e:
        problems.append("inboxd JSON report unreadable: %s" % e)
    for side, name in (("a", "bare client"), ("b", "inboxd")):
        if sides[side]["exit"] != 0:
            problems.append("%s exited with status %d" % (name, sides[side]["exit"]))

    ratio = sides["b"]["msg_s"] / sides["a"]["msg_s"]
    ok_ratio = ratio >= TARGET_RATIO
    ok_rss = sides["b"]["rss_mb"] < TARGET_RSS_MB
    print()
    print("N = %d messages, %.1f MB (avg %.1f KB)" % (a.count, a.total_bytes / 1e6, a.total_bytes / a.count / 1e3))
    print("%-34s %9s %10s %8s %10s %9s %7s" % ("run", "wall s", "msg/s", "MB/s", "peak RSS", "CPU s", "CPU%"))
    for side, name in (("a", "(a) bare imaplib, UID FETCH x%s" % bare_batch(d)), ("b", "(b) inboxd sync --once")):
        r = sides[side]
        print("%-34s %9.2f %10.0f %8.1f %7.0f MB %9.1f %7s" % (name, r["wall_s"], r["msg_s"], r["mb_s"], r["rss_mb"],
                                                           r["user_s"] + r["sys_s"], r["cpu_pct"]))
    if "stored" in sides["b"]:
        b = sides["b"]
        print("inboxd report: fetched %d, stored %d, duplicates %d, flagged %d"
              % (b["fetched"], b["stored"], b["duplicates"], b["flagged"]))
    print("ratio (b)/(a) = %.2f   target >= %.2f: %s" % (ratio, TARGET_RATIO, "PASS" if ok_ratio else "FAIL"))
    print("inboxd peak RSS = %.0f MB   target < %d MB: %s" % (sides["b"]["rss_mb"], TARGET_RSS_MB,
                                                              "PASS" if ok_rss else "FAIL"))
    for p in problems:
        print("INCOMPLETE: " + p)
    verdict = "INCOMPLETE" if problems else ("PASS" if ok_ratio and ok_rss else "FAIL")
    print("overall: " + verdict)
    if a.json_out:
        with open(a.json_out, "w") as f:
            json.dump({"count": a.count, "total_bytes": a.total_bytes, "bare": sides["a"], "inboxd": sides["b"],
                       "ratio": ratio, "targets": {"ratio": TARGET_RATIO, "rss_mb": TARGET_RSS_MB},
                       "problems": problems, "verdict": verdict}, f, indent=1)
    sys.exit(2 if problems else (0 if ok_ratio and ok_rss else 3))


def bare_batch(d):
    try:
        with open(os.path.join(d, "a.json")) as f:
            return json.load(f).get("batch", "?")
    except (OSError, ValueError):
        return "?"


if __name__ == "__main__":
    main()
