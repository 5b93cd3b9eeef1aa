#!/usr/bin/env python3
# The sync scenarios' helper (bench.sh, twoway.sh): copies of one account for each tool, the same
# changes applied to each tool's copy, and the counts that say whether a tool ended in step.
"""usage:
  mailchange.py clone SRC_MAILDIR DST_MAILDIR
      a copy of a Dovecot Maildir++ for another user: message files hard-linked (Dovecot never
      writes a message file in place: a flag change renames, an expunge unlinks), every other
      file (indexes, uidlist) copied, so both users start with the same UIDs
  mailchange.py imap HOST PORT USER PASSWORD_FILE CA_FILE TAG PERMILLE [--only new,flag,delete]
      another client changes the account over IMAPS: PERMILLE/3 per mille of its messages each get
      \\Flagged toggled and get deleted (STORE \\Deleted + UID EXPUNGE), and as many new messages
      are appended to INBOX
  mailchange.py maildir ROOT INBOX_DIR TAG PERMILLE
      a mail client changes the Maildir under ROOT the same way: F toggled in the file name,
      files unlinked, new files written into INBOX_DIR/new
  mailchange.py flagged ROOT
      prints how many messages under ROOT carry the F flag
Which messages change is decided by a hash of TAG and the Message-ID, so every tool's copy of
the account gets the same changes whatever its UIDs or file names; the IMAP side and the Maildir
side of one round use different TAGs ("S..." and "L..."), so they pick different messages.
Prints "new=N flag=N delete=N" (what it did).
"""
import hashlib, imaplib, os, re, shutil, ssl, sys, time

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


def imap_change(host, port, user, pwfile, ca, tag, permille, only):
    pw = open(pwfile).readline().strip()
    ctx = ssl.create_default_context(cafile=ca)
    c = imaplib.IMAP4_SSL(host, int(port), ssl_context=ctx)
    c.login(user, pw)
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
            what = pick(tag, m.group(1).decode(), permille)
            if what == "flag" and "flag" in only:
                (flag_off if b"\\Flagged" in meta else flag_on).append(uid)
            elif what == "delete" and "delete" in only:
                dele.append(uid)
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
            _, raw = new_message(tag, k)
            c.append("INBOX", None, imaplib.Time2Internaldate(time.time()), raw)
            done["new"] += 1
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
    d, name = os.path.split(path)
    base, sep, flags = name.partition(":2,")
    flags = flags.replace("F", "") if "F" in flags else "".join(sorted(flags + "F"))
    # A file in new/ has no info part; a client that sets a flag moves it to cur/.
    out = os.path.join(os.path.dirname(d), "cur", f"{base}:2,{flags}")
    os.rename(path, out)


def maildir_change(root, inbox, tag, permille):
    done = {"new": 0, "flag": 0, "delete": 0}
    total = 0
    for p in list(maildir_files(root)):
        total += 1
        mid = read_mid(p)
        if mid is None:
            continue
        what = pick(tag, mid, permille)
        if what == "flag":
            toggle_flagged(p)
            done["flag"] += 1
        elif what == "delete":
            os.unlink(p)
            done["delete"] += 1
    for k in range(max(1, total * permille // 3000)):
        _, raw = new_message(tag, k)
        name = f"{int(time.time())}.B{os.getpid()}Q{k}.bench"
        tmp = os.path.join(inbox, "tmp", name)
        with open(tmp, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, os.path.join(inbox, "new", name))
        done["new"] += 1
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
    if len(argv) >= 8 and argv[0] == "imap":
        only = {"new", "flag", "delete"}
        if len(argv) == 10 and argv[8] == "--only":
            only = set(argv[9].split(","))
        done = imap_change(*argv[1:7], int(argv[7]), only)
    elif len(argv) == 5 and argv[0] == "maildir":
        done = maildir_change(argv[1], argv[2], argv[3], int(argv[4]))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    print(f"new={done['new']} flag={done['flag']} delete={done['delete']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
