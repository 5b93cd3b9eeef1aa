#!/usr/bin/env bash
# Issue 13 benchmark: `mailferry batch run` against GNU parallel running `mailferry copy` per
# CSV row, on a Dovecot of its own (IMAP -> IMAP over TLS on loopback).
#
#   bash testdata/bench/batch.sh          (also: bash testdata/bench/bench.sh batch)
#
# 1. ACCOUNTS (200) small accounts of MSGS (10) messages: `batch run --workers W` against
#    `parallel -j W mailferry copy ...` at the same concurrency (W = 4), ROUNDS times alternately,
#    each into fresh destination users; accounts per minute of each and their ratio (target:
#    batch >= 0.9x parallel). Then `batch run` with 1 and 2 workers: messages/s with 1, 2, 4.
#    Peak RSS of the batch process (one worker) against 64 MiB + 32 MiB per running account.
# 2. ONE (5000) one-message accounts through `batch run --workers W --connections 1`: the
#    engine's overhead per account, read from the batch database afterwards:
#        (W x span - the copies' own time) / accounts
#    where span runs from the first job's enqueue (River's created_at) to the last job's end
#    (finalized_at) and the copies' time is what each job recorded (copy_ms: the Runner's
#    whole 'mailferry copy' of the account, logins included). It is the time a worker place
#    spends outside the copy: waiting to be fetched, River's fetch and completion, the row read,
#    slots and the outcome. Target under 20 ms. Also printed: the same with the process's wall
#    time (its start, migrations, load and report too), the part spent inside the jobs, and
#    the load average before and after (the figure means little on a loaded machine).
# Every destination is checked (message counts via doveadm) and every run must exit 0.
#
# Environment: ACCOUNTS, MSGS, WORKERS, ONE, ROUNDS (1), PARTS ("compare one": compare = part 1,
# one = part 2), QUICK=1 (ACCOUNTS=40, ONE=500 unless set), BATCH_BENCH_DIR
# (/tmp/mailferry-bench-batch, wiped), MAILFERRY_BIN (else ./cmd/mailferry is built),
# DOVECOT_*_PORT (30843, 30893, 30810, 30895). The full ONE=5000 run takes about 5000 x (copy
# time) / WORKERS: 15-25 minutes on 2 cores; `PARTS=one` runs it alone.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
D=$(realpath -m "${BATCH_BENCH_DIR:-/tmp/mailferry-bench-batch}")
if [ "${QUICK:-0}" = 1 ]; then
	ACCOUNTS=${ACCOUNTS:-40}
	ONE=${ONE:-500}
fi
ACCOUNTS=${ACCOUNTS:-200}
MSGS=${MSGS:-10}
WORKERS=${WORKERS:-4}
ONE=${ONE:-5000}
ROUNDS=${ROUNDS:-1}
PARTS=${PARTS:-compare one}
part() { case " $PARTS " in *" $1 "*) return 0 ;; esac; return 1; }
export DOVECOT_IMAP_PORT=${DOVECOT_IMAP_PORT:-30843} DOVECOT_IMAPS_PORT=${DOVECOT_IMAPS_PORT:-30893}
export DOVECOT_POP3_PORT=${DOVECOT_POP3_PORT:-30810} DOVECOT_POP3S_PORT=${DOVECOT_POP3S_PORT:-30895}

log() { echo "batch bench: $*" >&2; }

[ "$D" != / ] || { log "refusing BATCH_BENCH_DIR=/"; exit 2; }
rm -rf "$D"
mkdir -p "$D"
BIN=${MAILFERRY_BIN:-$D/mailferry}
if [ -z "${MAILFERRY_BIN:-}" ]; then
	(cd "$ROOT" && go build -o "$BIN" ./cmd/mailferry)
fi
DC=$D/dovecot
bash "$ROOT/testdata/dovecot/dovecot.sh" start "$DC"
trap 'bash "$ROOT/testdata/dovecot/dovecot.sh" stop "$DC" 2>/dev/null || true' EXIT
# shellcheck disable=SC1091
. "$DC/env"
CA=$MAILFERRY_TEST_CA
HOSTPORT=${MAILFERRY_TEST_IMAP#imaps://}
UID_=$(id -u vmail)
GID_=$(id -g vmail)
PW=bench-$RANDOM$RANDOM
printf '%s\n' "$PW" >"$D/pw"
chmod 600 "$D/pw"

BODY=$(head -c 1500 /dev/zero | tr '\0' 'x')

# add_users PREFIX N MSGS: users PREFIX1..PREFIXN, each with MSGS messages in INBOX written
# straight into its Maildir (Dovecot indexes them at the first login).
add_users() {
	local prefix=$1 n=$2 k=$3 i j home
	for i in $(seq 1 "$n"); do
		home=$DC/home/$prefix$i
		mkdir -p "$home/Maildir/cur" "$home/Maildir/new" "$home/Maildir/tmp"
		for j in $(seq 1 "$k"); do
			printf 'Message-ID: <%s.%d@bench>\r\nSubject: %s message %d\r\nFrom: a@example.org\r\n\r\n%s\r\n' \
				"$prefix$i" "$j" "$prefix$i" "$j" "$BODY" >"$home/Maildir/cur/$j.$prefix$i.bench:2,S"
		done
		printf '%s:{PLAIN}%s:%s:%s::%s::\n' "$prefix$i" "$PW" "$UID_" "$GID_" "$home"
	done >>"$DC/users"
	chown -R vmail:vmail "$DC/home"
}

# wait_login USER: Dovecot re-reads its users file at most once a second.
wait_login() {
	local i
	for i in $(seq 1 100); do
		doveadm -c "$DC/dovecot.conf" auth test "$1" "$PW" >/dev/null 2>&1 && return 0
		doveadm -c "$DC/dovecot.conf" reload >/dev/null 2>&1 || true
	done
	log "user $1 cannot log in"
	exit 1
}

# csv FILE SRCPREFIX DSTPREFIX N
csv() {
	local i
	{
		echo "id,src,dst,src_auth,dst_auth"
		for i in $(seq 1 "$4"); do
			echo "a$i,imaps://$2$i@$HOSTPORT,imaps://$3$i@$HOSTPORT,file:$D/pw,file:$D/pw"
		done
	} >"$1"
}

# check DSTPREFIX N WANT: every destination DSTPREFIX1..N holds WANT messages (one doveadm
# over all users: one per user took minutes for 5,000).
check() {
	local bad
	bad=$(doveadm -c "$DC/dovecot.conf" -f flow mailbox status -A messages INBOX 2>/dev/null |
		awk -v p="$1" -v n="$2" -v want="messages=$3" '
			index($1, p) == 1 {
				i = substr($1, length(p) + 1)
				if (i !~ /^[0-9]+$/ || i + 0 < 1 || i + 0 > n) next
				seen[i + 0] = 1
				if ($3 != want) bad++
			}
			END { for (i = 1; i <= n; i++) if (!(i in seen)) bad++; print bad + 0 }')
	[ "$bad" = 0 ] || { log "$bad of $2 destinations $1* do not hold $3 messages"; exit 1; }
}

# timed OUT CMD...: runs CMD, writes "seconds maxrss_kib" to OUT; fails on a non-zero exit.
timed() {
	local out=$1
	shift
	/usr/bin/time -f '%e %M' -o "$out" "$@" >"$out.stdout" 2>"$out.stderr" ||
		{ log "$* failed:"; tail -n 5 "$out.stderr" "$out.stdout" >&2; exit 1; }
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
log "seeding (parts: $PARTS)"
if part compare; then
	add_users src "$ACCOUNTS" "$MSGS"
	for r in $(seq 1 "$ROUNDS"); do
		add_users "b${r}d" "$ACCOUNTS" 0
		add_users "p${r}d" "$ACCOUNTS" 0
	done
	for w in 1 2; do add_users "w${w}d" "$ACCOUNTS" 0; done
fi
if part one; then
	add_users one "$ONE" 1
	add_users onedst "$ONE" 0
fi
if part one; then wait_login "onedst$ONE"; else wait_login "w2d$ACCOUNTS"; fi

RES=$D/results
mkdir -p "$RES"
if part compare; then
	for r in $(seq 1 "$ROUNDS"); do
		csv "$D/b$r.csv" src "b${r}d" "$ACCOUNTS"
		csv "$D/p$r.csv" src "p${r}d" "$ACCOUNTS"
		log "round $r: batch run --workers $WORKERS"
		XDG_STATE_HOME=$D/state-b$r timed "$RES/batch$r" "$BIN" batch run "$D/b$r.csv" --workers "$WORKERS" --ca-file "$CA"
		check "b${r}d" "$ACCOUNTS" "$MSGS"
		log "round $r: parallel -j $WORKERS mailferry copy"
		XDG_STATE_HOME=$D/state-p$r timed "$RES/parallel$r" parallel -j "$WORKERS" --colsep , --joblog "$RES/joblog$r" \
			"$BIN" copy {2} {3} --src-password-file "$D/pw" --dst-password-file "$D/pw" --ca-file "$CA" --progress never --quiet \
			:::: <(tail -n +2 "$D/p$r.csv")
		check "p${r}d" "$ACCOUNTS" "$MSGS"
	done
	for w in 1 2; do
		csv "$D/w$w.csv" src "w${w}d" "$ACCOUNTS"
		log "batch run --workers $w"
		XDG_STATE_HOME=$D/state-w$w timed "$RES/workers$w" "$BIN" batch run "$D/w$w.csv" --workers "$w" --ca-file "$CA"
		check "w${w}d" "$ACCOUNTS" "$MSGS"
	done
fi

ratio() { python3 -c "import sys; print(f'{float(sys.argv[1]) / float(sys.argv[2]):.2f}')" "$@"; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }

if part compare; then
	bt=() pt=() brss=()
	for r in $(seq 1 "$ROUNDS"); do
		read -r s k <"$RES/batch$r"
		bt+=("$s") brss+=("$k")
		read -r s _ <"$RES/parallel$r"
		pt+=("$s")
	done
	B=$(median "${bt[@]}")
	P=$(median "${pt[@]}")
	read -r W1 _ <"$RES/workers1"
	read -r W2 _ <"$RES/workers2"
	RSS=$(median "${brss[@]}")
	cat <<EOF
| batch: $ACCOUNTS accounts x $MSGS messages, IMAP -> IMAP (TLS, loopback), $(nproc) cores | value |
|---|---|
| batch run --workers $WORKERS: wall (median of $ROUNDS) | ${B} s = $(python3 -c "print(f'{$ACCOUNTS * 60 / $B:.0f}')") accounts/min |
| parallel -j $WORKERS mailferry copy: wall (median of $ROUNDS) | ${P} s = $(python3 -c "print(f'{$ACCOUNTS * 60 / $P:.0f}')") accounts/min |
| batch / parallel accounts per minute (target >= 0.9) | $(ratio "$P" "$B") |
| messages/s with 1, 2, $WORKERS workers | $(python3 -c "print(f'{$ACCOUNTS * $MSGS / $W1:.0f}, {$ACCOUNTS * $MSGS / $W2:.0f}, {$ACCOUNTS * $MSGS / $B:.0f}')") |
| peak RSS of the batch process, $WORKERS accounts running (limit 64 + 32 x $WORKERS MiB) | $((RSS / 1024)) MiB |
EOF
fi

if part one; then
	csv "$D/one.csv" one onedst "$ONE"
	log "$ONE one-message accounts: batch run --workers $WORKERS --connections 1"
	XDG_STATE_HOME=$D/state-one timed "$RES/one" "$BIN" batch run "$D/one.csv" --workers "$WORKERS" --ca-file "$CA" --connections 1
	check onedst "$ONE" 1
	# Engine time per account from the run's database: River's own timestamps and the copy
	# time each job recorded (copy_ms); see the head of this file.
	ENGINE=$(python3 - "$D/one.batch.db" "$(cut -d' ' -f1 "$RES/one")" "$WORKERS" <<'PY'
import re, sqlite3, sys
from datetime import datetime
db, wall, workers = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
c = sqlite3.connect(db)
rows = c.execute("select created_at, attempted_at, finalized_at, metadata from river_job where state = 'completed'").fetchall()
def t(s):
    return datetime.fromisoformat(s).timestamp()
# River's SQLite driver keeps metadata as SQLite JSONB (3.45+), which Python's older sqlite
# cannot read; JSONB holds a number as its text after a one-byte header.
def copy_ms(m):
    got = re.search(rb'copy_ms.([0-9]+)', bytes(m), re.S)
    return int(got.group(1)) if got else 0
n = len(rows)
copy = sum(copy_ms(m) for *_, m in rows) / 1000
job = sum(t(f) - t(a) for _, a, f, _ in rows)
span = max(t(f) for _, _, f, _ in rows) - min(t(cr) for cr, _, _, _ in rows)
print(f"{n} {1000 * (workers * span - copy) / n:.1f} {1000 * (workers * wall - copy) / n:.1f} {1000 * (job - copy) / n:.1f} {1000 * copy / n:.1f} {span:.1f}")
PY
	)
	read -r OW ORSS <"$RES/one"
	read -r ON OVER OVERWALL INJOB OCOPY SPAN <<<"$ENGINE"
	cat <<EOF
| batch: $ONE one-message accounts, --workers $WORKERS --connections 1, $(nproc) cores | value |
|---|---|
| accounts completed; process wall; peak RSS (limit 64 + 32 x $WORKERS MiB) | $ON; ${OW} s; $((ORSS / 1024)) MiB |
| first enqueue to last end (span); accounts/min | ${SPAN} s; $(python3 -c "print(f'{$ON * 60 / $SPAN:.0f}')") |
| **engine time per account outside the copy: (W x span - copy time) / accounts (target < 20 ms)** | **${OVER} ms** |
| the same with the process's wall time (start, migrations, load, report included) | ${OVERWALL} ms |
| ... of which inside the job (River job time - copy time); the copy itself | ${INJOB} ms; ${OCOPY} ms |
EOF
fi
echo "| load average (1, 5, 15 min) before; after | $LOAD_BEFORE; $(cut -d' ' -f1-3 /proc/loadavg) |"
