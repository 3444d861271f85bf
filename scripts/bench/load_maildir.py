#!/usr/bin/env python3
"""Put a generated corpus into a Dovecot Maildir++ folder on disk (much faster than APPEND or LMTP).

    load_maildir.py --corpus DIR --folder MAILDIR/.NAME --owner vmail

Each DIR/NNNNNN.eml becomes FOLDER/cur/<time>.M<NNNNNN>P<pid>.bench,S=<size>,W=<size>:2, (no flags).
The files are hard links to the corpus when both lie on one filesystem (Dovecot never rewrites a Maildir
file, it only renames it), else copies. S= and W= (the files already have CRLF line endings, so the
virtual size equals the size) let Dovecot answer RFC822.SIZE without reading the files. The corpus order
is kept in the names, so Dovecot assigns UIDs in generation order. Prints the number of files on stdout.
"""
import argparse
import os
import pwd
import shutil
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--folder", required=True)
    ap.add_argument("--owner", default="vmail")
    ap.add_argument("--copy", action="store_true", help="always copy instead of hard-linking")
    a = ap.parse_args()
    pw = pwd.getpwnam(a.owner)
    cur = os.path.join(a.folder, "cur")
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(a.folder, sub), exist_ok=True)
        os.chown(os.path.join(a.folder, sub), pw.pw_uid, pw.pw_gid)
    base, pid = int(time.time()) - 10 ** 6, os.getpid()
    names = sorted(n for n in os.listdir(a.corpus) if n.endswith(".eml"))
    for n in names:
        src = os.path.join(a.corpus, n)
        size = os.stat(src).st_size
        seq = int(n.split(".")[0])
        dst = os.path.join(cur, "%d.M%06dP%d.bench,S=%d,W=%d:2," % (base + seq, seq, pid, size, size))
        linked = False
        if not a.copy:
            try:
                os.link(src, dst)
                linked = True
            except OSError:
                pass
        if not linked:
            shutil.copyfile(src, dst)
        os.chown(dst, pw.pw_uid, pw.pw_gid)
    print(len(names))


if __name__ == "__main__":
    main()
