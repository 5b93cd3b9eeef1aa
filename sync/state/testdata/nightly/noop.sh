#!/usr/bin/env bash
# No-op rerun measurement for the per-folder state (issue 11 item 3): a copy of N messages
# IMAP -> Maildir from a Dovecot started by testdata/dovecot/dovecot.sh, then reruns with
# nothing new, timed with /usr/bin/time (elapsed, CPU, peak RSS).
#
#   bash sync/state/testdata/nightly/noop.sh DOVECOT_DIR [FOLDERS MESSAGES_PER_FOLDER [RERUNS]]
#
# e.g. `... noop.sh /tmp/dc 1 50000` (50,000 in INBOX) or `... noop.sh /tmp/dc 10 20000`
# (200,000 in 10 folders). The mail is written straight into a new user's Maildir (small
# messages, 1 in 5 flagged \Seen, 1 in 50 \Flagged), as testdata/bench/gencorpus.py does, then
# indexed by doveadm, so the copy is not slowed by Dovecot indexing on first access.
set -euo pipefail
D=${1:?usage: noop.sh DOVECOT_DIR [FOLDERS PER_FOLDER [RERUNS]]}
FOLDERS=${2:-1}
PER=${3:-50000}
RERUNS=${4:-3}
ROOT=$(cd "$(dirname "$0")/../../../.." && pwd)
. "$D/env"
user="nb${FOLDERS}x${PER}r$RANDOM"
home="$D/home/$user"
echo "$user:{PLAIN}pw-$user:$(id -u vmail):$(id -g vmail)::$home::" >>"$D/users"
python3 - "$home/Maildir" "$FOLDERS" "$PER" <<'PY'
import os, sys
root, folders, per = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
names = [""] + [".F%02d" % i for i in range(1, folders)]
for f, name in enumerate(names):
    d = os.path.join(root, name) if name else root
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(d, sub), exist_ok=True)
    for i in range(per):
        flags = ("F" if i % 50 == 0 else "") + ("S" if i % 5 == 0 else "")
        body = ("From: a%d@example.org\r\nTo: b@example.org\r\nSubject: m %d/%d\r\n"
                "Message-ID: <%d.%d@bench.example>\r\nDate: Mon, 7 Dec 2026 07:00:00 +0000\r\n\r\n"
                "body %d of folder %d\r\n" % (i % 97, f, i, f, i, i, f)) + "x" * (200 + i % 900) + "\r\n"
        data = body.encode()
        with open(os.path.join(d, "cur", "1765000000.M%dP%d.bench,S=%d:2,%s" % (i, f, len(data), flags)), "wb") as fh:
            fh.write(data)
PY
chown -R vmail:vmail "$home"
doveadm -c "$D/dovecot.conf" force-resync -u "$user" '*'
doveadm -c "$D/dovecot.conf" index -u "$user" '*'
BIN=$(mktemp -d)/mailferry
(cd "$ROOT" && go build -o "$BIN" ./cmd/mailferry)
work=$(mktemp -d)
export MAILFERRY_SRC_PASSWORD="pw-$user"
run() {
	/usr/bin/time -f "$1: %e s elapsed, %U s user, %S s sys, %M KiB peak RSS" \
		"$BIN" copy "imaps://$user@${MAILFERRY_TEST_IMAP#imaps://}" "maildir:$work/out" --checkpoint "$work/cp.jsonl" \
		--ca-file "$MAILFERRY_TEST_CA" --progress never --quiet
}
echo "$FOLDERS folder(s) x $PER messages = $((FOLDERS * PER)) ($user)"
run copy
for i in $(seq "$RERUNS"); do run "no-op rerun $i"; done
echo "records: $(cat "$work"/cp.jsonl.state/*.log | wc -l) log lines in $(ls "$work"/cp.jsonl.state/*.log | wc -l) folder log(s)"
rm -rf "$work" "$(dirname "$BIN")"
