#!/usr/bin/env python3
# The corpus generator behind docs/performance.md and `make bench`: the same seed always gives
# the same messages, so runs on different days compare.
"""Write a deterministic, realistic mail corpus straight into a Dovecot user's Maildir++.

usage: gencorpus.py MAILDIR TOTAL [--seed N]
Folders get a share of TOTAL; sizes follow a log-normal body with ~12% attachments.
Run it on a Dovecot user's Maildir (home/<user>/Maildir under the dovecot-up folder), then
chown -R vmail:vmail that home; Dovecot indexes it on first access.
"""
import argparse, base64, email.utils, os, random, time

FOLDERS = [("", .55), (".Sent", .15), (".Archive", .05), (".Archive.2023", .12),
           (".Entw&APw-rfe", .03), (".Projects with space", .05), (".Trash", .05)]
WORDS = ("the quick brown fox jumps over lazy dog mail server client sync folder message "
         "meeting report invoice budget schedule project review deadline update team").split()

def para(r, n):
    return " ".join(r.choice(WORDS) for _ in range(n))

def wrap(s, w=72):
    out, line = [], []
    for word in s.split():
        line.append(word)
        if sum(len(x) + 1 for x in line) > w:
            out.append(" ".join(line)); line = []
    out.append(" ".join(line))
    return "\r\n".join(out)

def message(r, i, date, tricky=None):
    mid = f"<{i}.{r.randrange(1 << 40):x}@corpus.example>"
    hdr = [f"Return-Path: <user{i % 97}@example.org>",
           f"Received: from mx{i % 5}.example.org by mail.example.net; {email.utils.formatdate(date)}",
           f"From: User {i % 97} <user{i % 97}@example.org>",
           f"To: alice@example.net", f"Subject: {para(r, r.randint(3, 9))} #{i}",
           f"Date: {email.utils.formatdate(date)}", f"Message-ID: {mid}", "MIME-Version: 1.0"]
    body_words = max(20, int(r.lognormvariate(5.5, 1.0)))
    text = wrap(para(r, body_words))
    if r.random() < 0.12:
        att = r.randbytes(int(min(4_000_000, r.lognormvariate(11.0, 1.3))))
        b = base64.encodebytes(att).decode().replace("\n", "\r\n")
        hdr.append('Content-Type: multipart/mixed; boundary="b1"')
        body = (f"--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n"
                f"--b1\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
                f'Content-Disposition: attachment; filename="file{i}.bin"\r\n\r\n{b}--b1--\r\n')
    else:
        hdr.append("Content-Type: text/plain; charset=utf-8")
        body = text + "\r\n"
    raw = ("\r\n".join(hdr) + "\r\n\r\n" + body).encode()
    return raw

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("maildir"); ap.add_argument("total", type=int)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    r = random.Random(a.seed)
    now = 1_760_000_000
    i, nbytes = 0, 0
    for folder, share in FOLDERS:
        d = os.path.join(a.maildir, folder) if folder else a.maildir
        for sub in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(d, sub), exist_ok=True)
        if folder:
            open(os.path.join(d, "maildirfolder"), "a").close()
        n = max(1, int(a.total * share))
        msgs = []
        for _ in range(n):
            i += 1
            date = now - r.randrange(3 * 365 * 86400)
            msgs.append((message(r, i, date), date))
        for k, (raw, date) in enumerate(msgs):
            flags = "".join(f for f, p in (("F", .05), ("R", .2), ("S", .8)) if r.random() < p)
            flags = "".join(sorted(flags))
            name = f"{date}.M{k}P{a.seed}.corpus:2,{flags}"
            p = os.path.join(d, "cur", name)
            with open(p, "wb") as f:
                f.write(raw)
            os.utime(p, (date, date))
            nbytes += len(raw)
    print(f"{i} messages, {nbytes / 1e6:.1f} MB in {a.maildir}")

if __name__ == "__main__":
    main()
