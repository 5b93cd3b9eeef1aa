#!/usr/bin/env python3
# The sync scenarios' helper (bench.sh, twoway.sh): copies of one account for each tool, the same
# changes applied to each tool's copy, and the counts that say whether a tool ended in step.
"""usage:
  mailchange.py clone SRC_MAILDIR DST_MAILDIR
      a copy of a Dovecot Maildir++ for another user: message files hard-linked (Dovecot never
      writes a message file in place: a flag change renames, an expunge unlinks), every other
      file (indexes, uidlist) copied, so both users start with the same UIDs
  mailchange.py imap HOST PORT USER PASSWORD_FILE CA_FILE TAG PERMILLE [--only new,flag,delete] [--record FILE]
      another client changes the account over IMAPS: PERMILLE/3 per mille of its messages each get
      \\Flagged toggled and get deleted (STORE \\Deleted + UID EXPUNGE), and as many new messages
      are appended to INBOX
  mailchange.py maildir ROOT INBOX_DIR TAG PERMILLE [--record FILE]
      a mail client changes the Maildir under ROOT the same way: F toggled in the file name,
      files unlinked, new files written into INBOX_DIR/new
--record FILE writes what was done as JSON, for the change sync's floor (changefloor/): each
message changed (folder, UID or file, Message-ID, \\Flagged after) and, over IMAP, each folder's
UIDVALIDITY and HIGHESTMODSEQ before the changes (what a syncing tool last saw).
  mailchange.py flagged ROOT
      prints how many messages under ROOT carry the F flag
Which messages change is decided by a hash of TAG and the Message-ID, so every tool's copy of
the account gets the same changes whatever its UIDs or file names; the IMAP side and the Maildir
side of one round use different TAGs ("S..." and "L..."), so they pick different messages.
Prints "new=N flag=N delete=N" (what it did).
"""
import hashlib, imaplib, json, os, re, shutil, ssl, sys, time

MID = re.compile(rb"^message-id:\s*(<[^>\r\n]*>)", re.I | re.M)


def pick(tag, mid, permille):
    """'flag', 'delete' or None: each kind gets permille/3 per mille of the messages."""
    h = int.from_bytes(hashlib.sha256(f"{tag}\0{mid}".encode()).digest()[:8], "big") % 3000
    per = max(1, permille)  # per 3000: permille/3 per mille for each kind
    if h < per:
        return "flag"
    if h < 2 * per:
        return "delete"
    return None


def new_message(tag, k):
    mid = f"<new.{tag}.{k}@bench.example>"
    return mid, (f"From: Bench <bench@example.org>\r\nTo: someone@example.net\r\n"
                 f"Subject: new message {tag} {k}\r\nDate: Mon, 07 Dec 2026 07:00:00 +0000\r\n"
                 f"Message-ID: {mid}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\n"
                 f"a new message written between two syncs ({tag} {k})\r\n").encode()


def clone(src, dst):
    for root, dirs, files in os.walk(src):
        rel = os.path.relpath(root, src)
        out = os.path.normpath(os.path.join(dst, rel))
        os.makedirs(out, exist_ok=True)
        link = os.path.basename(root) in ("cur", "new")
        for f in files:
            if link:
                os.link(os.path.join(root, f), os.path.join(out, f))
            else:
                shutil.copy2(os.path.join(root, f), os.path.join(out, f))


def imap_change(host, port, user, pwfile, ca, tag, permille, only, rec=None):
    pw = open(pwfile).readline().strip()
    ctx = ssl.create_default_context(cafile=ca)
    c = imaplib.IMAP4_SSL(host, int(port), ssl_context=ctx)
    c.login(user, pw)
    if rec is not None:
        c.enable("CONDSTORE")  # so that SELECT answers HIGHESTMODSEQ (RFC 7162 §3.1.2.1)
    typ, boxes = c.list()
    names = []
    for line in boxes:
        m = re.match(rb'\((?P<attrs>[^)]*)\) (?:"[^"]*"|NIL) (?P<name>.*)$', line)
        if m and b"\\Noselect" not in m.group("attrs"):
            names.append(m.group("name").decode())
    done = {"new": 0, "flag": 0, "delete": 0}
    total = 0
    for name in names:
        typ, data = c.select(name)
        n = int(data[0])
        total += n
        if rec is not None:
            rec["folders"][name] = {"uidvalidity": int(c.untagged_responses["UIDVALIDITY"][0]),
                                    "modseq": int(c.untagged_responses["HIGHESTMODSEQ"][0])}
        if n == 0:
            continue
        typ, data = c.uid("FETCH", "1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
        flag_on, flag_off, dele = [], [], []
        for item in data:
            if not isinstance(item, tuple):
                continue
            meta, hdr = item
            uid = re.search(rb"UID (\d+)", meta).group(1).decode()
            m = MID.search(hdr)
            if not m:
                continue
            mid = m.group(1).decode()
            what = pick(tag, mid, permille)
            if what == "flag" and "flag" in only:
                on = b"\\Flagged" not in meta
                (flag_on if on else flag_off).append(uid)
                if rec is not None:
                    rec["flag"].append({"folder": name, "uid": int(uid), "mid": mid, "flagged": on})
            elif what == "delete" and "delete" in only:
                dele.append(uid)
                if rec is not None:
                    rec["delete"].append({"folder": name, "uid": int(uid), "mid": mid})
        if flag_on:
            c.uid("STORE", ",".join(flag_on), "+FLAGS.SILENT", "(\\Flagged)")
        if flag_off:
            c.uid("STORE", ",".join(flag_off), "-FLAGS.SILENT", "(\\Flagged)")
        if dele:
            s = ",".join(dele)
            c.uid("STORE", s, "+FLAGS.SILENT", "(\\Deleted)")
            c.uid("EXPUNGE", s)
        done["flag"] += len(flag_on) + len(flag_off)
        done["delete"] += len(dele)
    if "new" in only:
        for k in range(max(1, total * permille // 3000)):
            mid, raw = new_message(tag, k)
            typ, data = c.append("INBOX", None, imaplib.Time2Internaldate(time.time()), raw)
            done["new"] += 1
            if rec is not None:
                m = re.search(rb"APPENDUID \d+ (\d+)", data[0])
                rec["new"].append({"folder": "INBOX", "uid": int(m.group(1)), "mid": mid})
    c.logout()
    return done


def maildir_files(root):
    for base, dirs, files in os.walk(root):
        if os.path.basename(base) in ("cur", "new"):
            for f in files:
                yield os.path.join(base, f)


def read_mid(path):
    with open(path, "rb") as f:
        head = f.read(16384)
    m = MID.search(head.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0])
    return m.group(1).decode() if m else None


def toggle_flagged(path):
    """Returns the new path and whether it now carries F."""
    d, name = os.path.split(path)
    base, sep, flags = name.partition(":2,")
    flags = flags.replace("F", "") if "F" in flags else "".join(sorted(flags + "F"))
    # A file in new/ has no info part; a client that sets a flag moves it to cur/.
    out = os.path.join(os.path.dirname(d), "cur", f"{base}:2,{flags}")
    os.rename(path, out)
    return out, "F" in flags


def maildir_change(root, inbox, tag, permille, rec=None):
    done = {"new": 0, "flag": 0, "delete": 0}
    total = 0
    for p in list(maildir_files(root)):
        total += 1
        mid = read_mid(p)
        if mid is None:
            continue
        what = pick(tag, mid, permille)
        if what == "flag":
            out, on = toggle_flagged(p)
            done["flag"] += 1
            if rec is not None:
                rec["flag"].append({"file": out, "was": p, "mid": mid, "flagged": on})
        elif what == "delete":
            os.unlink(p)
            done["delete"] += 1
            if rec is not None:
                rec["delete"].append({"file": p, "mid": mid})
    for k in range(max(1, total * permille // 3000)):
        mid, raw = new_message(tag, k)
        name = f"{int(time.time())}.B{os.getpid()}Q{k}.bench"
        tmp = os.path.join(inbox, "tmp", name)
        with open(tmp, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, os.path.join(inbox, "new", name))
        done["new"] += 1
        if rec is not None:
            rec["new"].append({"file": os.path.join(inbox, "new", name), "mid": mid})
    return done


def flagged(root):
    n = 0
    for p in maildir_files(root):
        _, _, flags = os.path.basename(p).partition(":2,")
        n += "F" in flags
    return n


def main(argv):
    if len(argv) >= 3 and argv[0] == "clone":
        clone(argv[1], argv[2])
        return 0
    if len(argv) >= 2 and argv[0] == "flagged":
        print(flagged(argv[1]))
        return 0
    # Options come in pairs after the positional arguments (8 for imap, 5 for maildir).
    npos = 8 if argv[:1] == ["imap"] else 5
    opts = dict(zip(argv[npos::2], argv[npos + 1::2]))
    record, rec = opts.pop("--record", None), None
    if record is not None:
        rec = {"folders": {}, "flag": [], "delete": [], "new": []}
    if len(argv) >= 8 and argv[0] == "imap" and set(opts) <= {"--only"}:
        only = set(opts.get("--only", "new,flag,delete").split(","))
        done = imap_change(*argv[1:7], int(argv[7]), only, rec)
    elif len(argv) >= 5 and argv[0] == "maildir" and not opts:
        done = maildir_change(argv[1], argv[2], argv[3], int(argv[4]), rec)
    else:
        print(__doc__, file=sys.stderr)
        return 2
    if record is not None:
        with open(record, "w") as f:
            json.dump(rec, f)
    print(f"new={done['new']} flag={done['flag']} delete={done['delete']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
