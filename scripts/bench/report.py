#!/usr/bin/env python3
"""Print the result table of scripts/bench-ingest.sh and write it as JSON.

    report.py --run-dir DIR --count N --total-bytes B [--json-out FILE]

Reads DIR/a.time, DIR/b.time (GNU `/usr/bin/time -v` output), DIR/a.wall, DIR/b.wall (seconds, measured
by the caller around the process), DIR/a.json (the bare client's own report) and DIR/b.json (the output of
`inboxd sync --once --json`); and, when present, DIR/c.* of the run without search indexing
(`--no-index`), and DIR/*.busy (the machine's busy CPU seconds before and after each run, from /proc/stat).
Rates use the whole process's wall time, start to exit, for every side.
MB = 10^6 bytes. Exit status 0 when every target is met, 3 when one is missed, 2 when a run is incomplete.
"""
import argparse
import json
import os
import re
import sys

TARGET_RATIO = 0.60
TARGET_RSS_MB = 256
TARGET_INDEX_OVERHEAD = 0.20


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
    inboxd_sides = ["b"] + (["c"] if os.path.exists(os.path.join(d, "c.time")) else [])
    for side in ["a"] + inboxd_sides:
        r = time_v(os.path.join(d, side + ".time"))
        with open(os.path.join(d, side + ".wall")) as f:
            r["wall_s"] = float(f.read().strip())
        r["msg_s"] = a.count / r["wall_s"]
        r["mb_s"] = a.total_bytes / 1e6 / r["wall_s"]
        try:
            with open(os.path.join(d, side + ".busy")) as f:
                before, after = (float(x) for x in f.read().split())
            r["machine_cpu_s"] = after - before
        except (OSError, ValueError):
            r["machine_cpu_s"] = None
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
    for side in inboxd_sides:
        problems.extend(inboxd_report(d, side, sides[side], a.count))
    names = {"a": "bare client", "b": "inboxd", "c": "inboxd --no-index"}
    for side in ["a"] + inboxd_sides:
        name = names[side]
        if sides[side]["exit"] != 0:
            problems.append("%s exited with status %d" % (name, sides[side]["exit"]))

    ratio = sides["b"]["msg_s"] / sides["a"]["msg_s"]
    ok_ratio = ratio >= TARGET_RATIO
    ok_rss = sides["b"]["rss_mb"] < TARGET_RSS_MB
    print()
    print("N = %d messages, %.1f MB (avg %.1f KB)" % (a.count, a.total_bytes / 1e6, a.total_bytes / a.count / 1e3))
    print("%-34s %9s %10s %8s %10s %9s %7s %11s" % ("run", "wall s", "msg/s", "MB/s", "peak RSS", "CPU s", "CPU%",
                                                   "machine CPU"))
    rows = [("a", "(a) bare imaplib, UID FETCH x%s" % bare_batch(d)), ("b", "(b) inboxd sync --once")]
    if "c" in sides:
        rows.append(("c", "(c) inboxd sync --once --no-index"))
    for side, name in rows:
        r = sides[side]
        machine = r.get("machine_cpu_s")
        machine_text = "%.1f s %3.0f%%" % (machine, 100 * machine / r["wall_s"]) if machine is not None else "?"
        print("%-34s %9.2f %10.0f %8.1f %7.0f MB %9.1f %7s %11s" % (name, r["wall_s"], r["msg_s"], r["mb_s"], r["rss_mb"],
                                                                r["user_s"] + r["sys_s"], r["cpu_pct"], machine_text))
    for side in inboxd_sides:
        if "stored" in sides[side]:
            b = sides[side]
            print("inboxd report (%s): fetched %d, stored %d, duplicates %d, flagged %d"
                  % (side, b["fetched"], b["stored"], b["duplicates"], b["flagged"]))
    print("ratio (b)/(a) = %.2f   target >= %.2f: %s" % (ratio, TARGET_RATIO, "PASS" if ok_ratio else "FAIL"))
    print("inboxd peak RSS = %.0f MB   target < %d MB: %s" % (sides["b"]["rss_mb"], TARGET_RSS_MB,
                                                              "PASS" if ok_rss else "FAIL"))
    ok_index, overhead = True, None
    if "c" in sides:
        overhead = sides["b"]["wall_s"] / sides["c"]["wall_s"] - 1
        ok_index = overhead <= TARGET_INDEX_OVERHEAD
        print("ratio (c)/(a) = %.2f (without search indexing)" % (sides["c"]["msg_s"] / sides["a"]["msg_s"]))
        print("indexing adds %.0f%% to ingest time (wall (b)/(c) - 1)   target <= %.0f%%: %s"
              % (overhead * 100, TARGET_INDEX_OVERHEAD * 100, "PASS" if ok_index else "FAIL"))
    for p in problems:
        print("INCOMPLETE: " + p)
    ok_all = ok_ratio and ok_rss and ok_index
    verdict = "INCOMPLETE" if problems else ("PASS" if ok_all else "FAIL")
    print("overall: " + verdict)
    if a.json_out:
        with open(a.json_out, "w") as f:
            json.dump({"count": a.count, "total_bytes": a.total_bytes, "bare": sides["a"], "inboxd": sides["b"],
                       "inboxd_no_index": sides.get("c"), "ratio": ratio, "index_overhead": overhead,
                       "targets": {"ratio": TARGET_RATIO, "rss_mb": TARGET_RSS_MB,
                                   "index_overhead": TARGET_INDEX_OVERHEAD},
                       "problems": problems, "verdict": verdict}, f, indent=1)
    sys.exit(2 if problems else (0 if ok_all else 3))


def inboxd_report(d, side, r, count):
    """Adds the counts of `inboxd sync --once --json` (DIR/SIDE.json) to r; returns the problems found."""
    problems = []
    try:
        with open(os.path.join(d, side + ".json")) as f:
            reports = json.load(f)
        stored = sum(x.get("stored", 0) for x in reports)
        r.update(fetched=sum(x.get("fetched", 0) for x in reports), stored=stored,
                 duplicates=sum(x.get("duplicates", 0) for x in reports),
                 flagged=sum(x.get("flagged", 0) for x in reports),
                 errors=[x["error"] for x in reports if x.get("error")])
        if stored != count:
            problems.append("inboxd (%s) stored %d of %d messages" % (side, stored, count))
        if r["errors"]:
            problems.append("inboxd (%s) reported errors: %s" % (side, "; ".join(r["errors"])))
    except (OSError, ValueError, TypeError) as e:
        problems.append("inboxd (%s) JSON report unreadable: %s" % (side, e))
    return problems


def bare_batch(d):
    try:
        with open(os.path.join(d, "a.json")) as f:
            return json.load(f).get("batch", "?")
    except (OSError, ValueError):
        return "?"


if __name__ == "__main__":
    main()
