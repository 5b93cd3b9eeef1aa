#!/usr/bin/env python3
# The large-account generator behind the nightly and sync scenarios of `make bench`: many small
# messages, fast. gencorpus.py writes realistic sizes (about 30 KB a message, 12 % attachments),
# which for 200,000 messages would be 6 GB and minutes of writing; what these scenarios measure
# is the cost per message of a listing and of the state, so small bodies do.
"""Write TOTAL small messages (0.5-2 KB, CRLF) into a Dovecot user's Maildir++, spread over
FOLDERS folders (INBOX first, then .F01 .. .Fnn), straight to the files Dovecot reads.

usage: genbig.py MAILDIR TOTAL [--folders N] [--seed N] [--prefix P]
File names carry ,S=<size>,W=<size> (the bodies are CRLF, so the virtual size is the physical
one), so Dovecot indexes without reading the files. Message-IDs are <P.n@big.example>, unique
per prefix. About 20 % are \\Seen-less (new mail), 5 % \\Flagged. Prints one summary line.
"""
import argparse, multiprocessing, os, random

WORDS = ("the quick brown fox jumps over lazy dog mail server client sync folder message "
         "meeting report invoice budget schedule project review deadline update team").split()


def folder_dirs(maildir, n):
    names = [""] + [f".F{k:02d}" for k in range(1, n)]
    return [os.path.join(maildir, f) if f else maildir for f in names]


def message(r, prefix, i, date):
    words = " ".join(r.choice(WORDS) for _ in range(r.randint(40, 260)))
    lines = [words[k:k + 72] for k in range(0, len(words), 72)]
    hdr = (f"From: User {i % 97} <user{i % 97}@example.org>\r\nTo: someone@example.net\r\n"
           f"Subject: message {i} {r.choice(WORDS)}\r\nDate: {date}\r\n"
           f"Message-ID: <{prefix}.{i}@big.example>\r\nMIME-Version: 1.0\r\n"
           "Content-Type: text/plain; charset=utf-8\r\n\r\n")
    return (hdr + "\r\n".join(lines) + "\r\n").encode()


def write_part(args):
    """Writes messages k, k+procs, k+2*procs...: each from its own generator (seed, i), so the
    corpus does not depend on how many processes wrote it."""
    maildir, total, folders, seed, prefix, k, procs = args
    dirs = folder_dirs(maildir, folders)
    nbytes = 0
    t0 = 1_700_000_000
    for i in range(k, total, procs):
        r = random.Random(seed * 1_000_003 + i)
        d = dirs[i % len(dirs)]
        ts = t0 + i * 37
        raw = message(r, prefix, i, "Tue, 14 Nov 2023 00:00:00 +0000")
        x = r.random()
        flags = "" if x < 0.2 else ("FS" if x < 0.25 else "S")
        name = f"{ts}.M{i}P{seed}.big,S={len(raw)},W={len(raw)}:2,{flags}"
        p = os.path.join(d, "cur", name)
        with open(p, "wb") as f:
            f.write(raw)
        os.utime(p, (ts, ts))  # Dovecot's Maildir takes the file's mtime as INTERNALDATE
        nbytes += len(raw)
    return nbytes


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("maildir")
    ap.add_argument("total", type=int)
    ap.add_argument("--folders", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--prefix", default="big")
    a = ap.parse_args()
    dirs = folder_dirs(a.maildir, a.folders)
    for k, d in enumerate(dirs):
        for sub in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(d, sub), exist_ok=True)
        if k:
            open(os.path.join(d, "maildirfolder"), "a").close()
    procs = max(1, min(4, os.cpu_count() or 1))
    with multiprocessing.Pool(procs) as pool:
        nbytes = sum(pool.map(write_part, [(a.maildir, a.total, a.folders, a.seed, a.prefix, k, procs)
                                           for k in range(procs)]))
    print(f"{a.total} messages in {len(dirs)} folders, {nbytes / 1e6:.1f} MB in {a.maildir}")


if __name__ == "__main__":
    main()
