#!/usr/bin/env bash
# Side-by-side benchmark of mailferry against the peer tools (`make bench`).
#
#   bash testdata/bench/bench.sh [--quick] [SCENARIO...]
#
# Scenarios (default: all; nightly.sh and twoway.sh describe theirs in more detail):
#   imap-maildir  mailferry IMAP -> Maildir vs mbsync (both fsync), plus a rerun with nothing new,
#                 and the floors: a bare read of the account (imapfloor/), the same files written
#                 durably with no network (writefloor/), and both at once (combined)
#   pop3-maildir  mailferry POP3 -> Maildir vs the floors (a bare pipelined POP3 read, popfloor/;
#                 writefloor/; both at once) and getmail6
#   imap-imap     mailferry IMAP -> IMAP vs `doveadm backup` (dsync via imapc) and mbsync, each
#                 pair over the same transport: mailferry-plain (imap:// with --no-starttls, as
#                 dsync reads its source) against dsync, mailferry (TLS) against dsync-tls
#   nightly       issue 11: 50,000 messages in one folder, IMAP -> Maildir: mailferry's no-op
#                 rerun against mbsync's and its floor (imapfloor -mode status: TLS login,
#                 LIST-STATUS, LOGOUT), then one new message and one flag change per round
#   nightly-200k  issue 11: 200,000 messages in 10 folders: copy and no-op rerun (time, RSS)
#   sync-maildir  issue 12: `mailferry sync` IMAP <-> Maildir vs mbsync and OfflineIMAP: first
#                 sync of the corpus, a sync after 1 % changes on each side (next to its floor,
#                 changefloor/: the servers' and the disk's work only, told what changed), a
#                 no-op sync (next to its login floor)
#   sync-imap     issue 12: the same IMAP <-> IMAP, vs mbsync with two IMAP stores
#   sync-200k     issue 12: mailferry sync of a 200,000-message account (first and no-op: RSS)
# Each pair is run alternately (A B A B ...) after one untimed warm-up each, into fresh
# destinations, and the medians and the median of the per-round ratios are reported.
# The durable-write floor (writefloor/) writes as many files of the same sizes into the same
# folders as mailferry's Maildir sink does, with the sink's durability rule (create in tmp/,
# one syncfs per batch of 64, rename into cur/ or new/, fsync each touched directory); the
# combined floor runs the bare read and that write at the same time (together.sh): the best
# any tool could do on this machine at that moment. mailferry is reported against it. The
# result table goes to stdout and to testdata/bench/last-result.md.
#
# Environment:
#   ROUNDS=5           timed rounds per tool
#   QUICK=1            (or --quick) 2 rounds, no getmail (getmail alone takes 1-2 minutes), one
#                      first-sync round where OfflineIMAP runs (sync-maildir), and sync-200k only when named
#   MESSAGES=5000      corpus size; CORPUS_SEED=3 (about 157 MB with seed 3; seed 1 gives 122 MB)
#   MAILFERRY_FLAGS    extra flags for every `mailferry copy` (e.g. "--workers 2")
#   I2I_PEERS="dsync dsync-tls mbsync"   imap-imap peers to time (dsync is always run: it is the
#                      target; dsync-tls reads the source over TLS like mailferry does by default;
#                      mbsync takes about 15 s a round)
#   I2I_PLAIN=1        also time mailferry over plain IMAP on loopback (mailferry-plain), the
#                      transport dsync reads its source with; 0 leaves it out
#   BENCH_DIR=/tmp/mailferry-bench   Dovecot and all outputs (wiped at start)
#   BENCH_BIN=/tmp/mf-bench          where the binaries are built
#   MAILFERRY_BIN      time this mailferry binary instead of building ./cmd/mailferry
#   QUIET_WAIT=15      before each timed run, wait up to this long for the rest of the machine
#                      to go idle (this box is shared: others' builds skew the clock) ...
#   QUIET_BUDGET=180   ... but no more than this in all
#   GETMAIL_TIMEOUT=10 getmail's socket and child-wait timeout (see peers.sh)
#   KEEP=1             keep the copied mail under BENCH_DIR/work at the end
#   NIGHTLY_MESSAGES=50000, NIGHTLY_BIG=200000, NIGHTLY_BIG_FOLDERS=10   the nightly accounts
#   SYNC_PERMILLE=10   changes per sync round on each side (per mille of the messages)
#   SYNC_MD_TOOLS="mailferry mbsync offlineimap", SYNC_I2I_TOOLS="mailferry mbsync"
# Two benches must not share BENCH_DIR or ports: a second run with the same BENCH_DIR waits for
# the first (a lock next to it), and Dovecot refuses ports in use.
# Dovecot listens on 30143/30993 (IMAP), 30110/30995 (POP3) unless DOVECOT_*_PORT say otherwise.
#
# The corpus generator (gencorpus.py) and the peers' command lines (peers.sh) are the project's
# own; see the notes at the top of those files. Needs root (apt-get, chown to
# vmail, runuser for getmail), about 7 GB free under BENCH_DIR, and 10-12 minutes for a
# default run on 2 cores. Exits 1 when a correctness check of mailferry failed, or when it
# cannot run IMAP -> Maildir or POP3 -> Maildir at all.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
D=$(realpath -m "${BENCH_DIR:-/tmp/mailferry-bench}")
W=$D/work
BIN=$(realpath -m "${BENCH_BIN:-/tmp/mf-bench}")
QUICK=${QUICK:-0}
SCENARIOS=()
for a in "$@"; do
	case $a in
	--quick) QUICK=1 ;;
	imap-maildir | pop3-maildir | imap-imap | nightly | nightly-200k | sync-maildir | sync-imap | sync-200k) SCENARIOS+=("$a") ;;
	batch) exec bash "$HERE/batch.sh" ;; # issue 13, on a Dovecot of its own: see batch.sh
	-h | --help)
		awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
		exit 0
		;;
	*)
		echo "bench: unknown argument $a (want imap-maildir, pop3-maildir, imap-imap, nightly, nightly-200k, sync-maildir, sync-imap, sync-200k, --quick)" >&2
		exit 2
		;;
	esac
done
EXPLICIT=${#SCENARIOS[@]}
# sync-200k (a first sync of 200,000 messages) only runs in a full run, or when named.
if [ "$EXPLICIT" -eq 0 ]; then
	SCENARIOS=(imap-maildir pop3-maildir imap-imap nightly nightly-200k sync-maildir sync-imap)
	[ "$QUICK" = 1 ] || SCENARIOS+=(sync-200k)
fi
if [ "$QUICK" = 1 ]; then ROUNDS=${ROUNDS:-2}; else ROUNDS=${ROUNDS:-5}; fi
MESSAGES=${MESSAGES:-5000}
CORPUS_SEED=${CORPUS_SEED:-3}
GETMAIL_TIMEOUT=${GETMAIL_TIMEOUT:-10}
QUIET_WAIT=${QUIET_WAIT:-15}
QUIET_BUDGET=${QUIET_BUDGET:-180}
read -r -a MF_FLAGS <<<"${MAILFERRY_FLAGS:-}"
I2I_PEERS=" ${I2I_PEERS:-dsync dsync-tls mbsync} "
I2I_PLAIN=${I2I_PLAIN:-1}

export DOVECOT_IMAP_PORT=${DOVECOT_IMAP_PORT:-${IMAP_PORT:-30143}}
export DOVECOT_IMAPS_PORT=${DOVECOT_IMAPS_PORT:-${IMAPS_PORT:-30993}}
export DOVECOT_POP3_PORT=${DOVECOT_POP3_PORT:-${POP3_PORT:-30110}}
export DOVECOT_POP3S_PORT=${DOVECOT_POP3S_PORT:-${POP3S_PORT:-30995}}
IMAP_PORT=$DOVECOT_IMAP_PORT IMAPS_PORT=$DOVECOT_IMAPS_PORT
POP3_PORT=$DOVECOT_POP3_PORT POP3S_PORT=$DOVECOT_POP3S_PORT
export IMAP_PORT IMAPS_PORT POP3_PORT POP3S_PORT
CONF=$D/dovecot.conf
SRC_IMAP=imaps://alice@localhost:$IMAPS_PORT
DST_IMAP=imaps://bob@localhost:$IMAPS_PORT
# The same transport as dsync's source (peers.sh): plain IMAP on loopback, an explicit opt-out.
SRC_IMAP_PLAIN=imap://alice@127.0.0.1:$IMAP_PORT
DST_IMAP_PLAIN=imap://bob@127.0.0.1:$IMAP_PORT
PLAIN_FLAGS=(--no-starttls --allow-plaintext-auth)
SRC_POP3=pop3s://alice@localhost:$POP3S_PORT
WANT=0 # messages the current scenario's destination must end with
RESULTS=$W/results.tsv # scenario tool round wall_s rss_kib user_s sys_s box_cpu_s dovecot_cpu_s messages
CHECKS=$W/checks.tsv   # scenario what ok|FAIL detail
NOTES=$W/notes.tsv     # scenario note

# shellcheck source-path=SCRIPTDIR source=peers.sh
. "$HERE/peers.sh"
# shellcheck source-path=SCRIPTDIR source=nightly.sh
. "$HERE/nightly.sh"
# shellcheck source-path=SCRIPTDIR source=twoway.sh
. "$HERE/twoway.sh"

log() { echo "bench: $*" >&2; }

install_tools() {
	local pkgs=()
	command -v mbsync >/dev/null 2>&1 || pkgs+=(isync)
	command -v offlineimap >/dev/null 2>&1 || pkgs+=(offlineimap3)
	command -v parallel >/dev/null 2>&1 || pkgs+=(parallel)
	command -v getmail >/dev/null 2>&1 || pkgs+=(getmail6)
	[ -x /usr/bin/time ] || pkgs+=(time)
	command -v python3 >/dev/null 2>&1 || pkgs+=(python3)
	command -v runuser >/dev/null 2>&1 || pkgs+=(util-linux)
	[ ${#pkgs[@]} -eq 0 ] && return 0
	log "installing ${pkgs[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >/dev/null
	apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
}

# box_cpu prints the CPU seconds the whole machine has spent so far (user, nice, system,
# irq, softirq, steal): the difference over a run counts Dovecot's share as well.
box_cpu() {
	awk -v hz="$(getconf CLK_TCK)" '/^cpu /{printf "%.2f\n", ($2+$3+$4+$7+$8+$9)/hz; exit}' /proc/stat
}

# dovecot_cpu prints the CPU seconds Dovecot has spent so far: its master plus every child it
# has reaped. Sessions (imap, pop3, and with service_count=1 the TLS-terminating login process)
# end when the client logs out, so after a run its whole server side is counted.
dovecot_cpu() {
	local pid
	pid=$(cat "$D/run/master.pid")
	awk -v hz="$(getconf CLK_TCK)" '{sub(/^.*\) /, ""); printf "%.2f\n", ($12+$13+$14+$15)/hz}' "/proc/$pid/stat"
}

# count_maildir DIR prints how many messages the Maildir++ tree (or folder-per-directory
# tree) under DIR holds: the files in every cur/ and new/.
count_maildir() {
	find "$1" -type f \( -path '*/cur/*' -o -path '*/new/*' \) | wc -l
}

# count_server USER [MAILBOX] prints how many messages Dovecot holds for USER.
count_server() {
	if [ $# -eq 2 ]; then
		doveadm -c "$CONF" mailbox status -u "$1" messages "$2" | sed 's/.*messages=//'
	else
		doveadm -c "$CONF" mailbox status -u "$1" -t messages '*' | sed 's/.*messages=//'
	fi
}

note() { printf '%s\t%s\n' "$1" "$2" >>"$NOTES"; }

check() { # check SCENARIO WHAT OK DETAIL
	printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$CHECKS"
	[ "$3" = ok ] || log "CHECK FAILED: $1 $2: $4"
}

# timed SCENARIO TOOL ROUND COUNT_CMD -- CMD...: runs CMD under /usr/bin/time -v and appends a
# row to RESULTS (round 0 is the warm-up and counts for nothing). COUNT_CMD (a function name,
# or "-") prints how many messages the destination holds afterwards. Returns CMD's status.
timed() {
	local sc=$1 tool=$2 round=$3 counter=$4
	shift 5
	local base=$W/logs/$sc-$tool-$round
	local rc=0 t0 t1 c0 c1 s0 s1 rss user sys n=-
	wait_quiet
	s0=$(dovecot_cpu)
	c0=$(box_cpu)
	t0=$(date +%s%N)
	/usr/bin/time -v -o "$base.time" "$@" >"$base.log" 2>&1 || rc=$?
	t1=$(date +%s%N)
	c1=$(box_cpu)
	# Let the master reap the sessions that just logged out.
	sleep 0.3
	s1=$(dovecot_cpu)
	if [ $rc -ne 0 ]; then
		log "$sc: $tool (round $round) exited with $rc; last lines of $base.log:"
		tail -n 15 "$base.log" >&2
		[ "$counter" = - ] || n=$($counter)
		note "$sc" "$tool round $round failed (exit $rc, $(grep -c . "$base.log") lines of output, destination then held $n messages): $(grep -v '^Command exited' "$base.log" | tail -n 1)"
		# mailferry's failures fail the benchmark; a peer's are its own business (notes), and
		# a warm-up's failure only decides whether the tool runs at all.
		case $tool:$round in
		mailferry*:0) ;;
		mailferry*) check "$sc" "$tool round $round" FAIL "exit $rc; destination holds $n of $WANT messages" ;;
		esac
		return $rc
	fi
	rss=$(awk -F': ' '/Maximum resident set size/{print $2}' "$base.time")
	user=$(awk -F': ' '/User time/{print $2}' "$base.time")
	sys=$(awk -F': ' '/System time/{print $2}' "$base.time")
	if [ "$counter" != - ]; then
		n=$($counter)
		if [ "$n" != "$WANT" ]; then
			case $tool in
			mailferry*) check "$sc" "$tool round $round message count" FAIL "$n, want $WANT" ;;
			*) note "$sc" "$tool round $round left $n messages, want $WANT" ;;
			esac
		fi
	fi
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$sc" "$tool" "$round" \
		"$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", (b-a)/1e9}')" "$rss" "$user" "$sys" \
		"$(awk -v a="$c0" -v b="$c1" 'BEGIN{printf "%.2f", b-a}')" \
		"$(awk -v a="$s0" -v b="$s1" 'BEGIN{printf "%.2f", b-a}')" "$n" >>"$RESULTS"
	log "$sc: $tool round $round: $(tail -n 1 "$RESULTS" | cut -f4)s, peak RSS $((rss / 1024)) MiB, messages $n"
}

# wait_quiet waits until the machine has been idle (less than a quarter of a core busy) for
# half a second, or QUIET_WAIT seconds have passed: runs are alternated, but a build of
# someone else's landing in one tool's run skews that pair.
BUSY_STARTS=0
WAITED=0
wait_quiet() {
	local t0=$SECONDS a b
	while :; do
		a=$(box_cpu)
		sleep 0.5
		b=$(box_cpu)
		if awk -v a="$a" -v b="$b" 'BEGIN{exit !(b-a < 0.125)}'; then
			break
		fi
		if [ $((SECONDS - t0)) -ge "$QUIET_WAIT" ] || [ $((WAITED + SECONDS - t0)) -ge "$QUIET_BUDGET" ]; then
			BUSY_STARTS=$((BUSY_STARTS + 1))
			break
		fi
	done
	WAITED=$((WAITED + SECONDS - t0))
}

# fs_probe WHEN notes what creating 5000 small files costs on the output file system right now.
# On this kind of shared VM it swings from 0.1 s to 4 s of kernel CPU with what else the machine
# does, and every Maildir writer (mailferry and mbsync alike) pays it once per message.
fs_probe() {
	local d=$W/out/fsprobe-$1
	python3 - "$d" <<'PY' | { read -r r; note all "file system probe ($1): $r"; }
import os, resource, sys, time
d = sys.argv[1]
os.makedirs(d)
r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.time()
for i in range(5000):
    fd = os.open(f"{d}/f{i}", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    os.write(fd, b"x" * 100)
    os.close(fd)
r1 = resource.getrusage(resource.RUSAGE_SELF)
print(f"creating 5000 small files took {time.time() - t0:.2f} s, {r1.ru_stime - r0.ru_stime:.2f} s of it kernel CPU")
PY
}

# fresh NAME sets OUT to a new, never used output path under the work folder. Outputs are
# deleted only at the very end (about 6 GB for a default run): on this machine's file system
# the cost of creating files swings with recent deletions, and that must not land in anyone's
# timed window.
SEQ=0
OLD="" # the previous run's BENCH_DIR, moved aside at the start and deleted at the end
fresh() {
	SEQ=$((SEQ + 1))
	OUT=$W/out/$1-$SEQ
}

clean_outputs() {
	[ "${KEEP:-0}" = 1 ] && return 0
	rm -rf "$W/out" "$W/trash"
	mkdir -p "$W/out" "$W/trash"
	chmod 755 "$W/out"
	sync
}

# mf_copy SRC DST CHECKPOINT leaves in MF_CMD the mailferry command that copies SRC to DST.
mf_copy() {
	MF_CMD=("$BIN/mailferry" copy "$1" "$2" --src-password-file "$W/pw-alice" --dst-password-file "$W/pw-bob"
		--ca-file "$D/cert.pem" --checkpoint "$3" --progress never --quiet "${MF_FLAGS[@]}")
}

mf_verify() { # mf_verify SRC DST JSON_OUT
	"$BIN/mailferry" verify "$1" "$2" --src-password-file "$W/pw-alice" --dst-password-file "$W/pw-bob" \
		--ca-file "$D/cert.pem" --json >"$3" 2>"$3.err"
}

# verify_check SCENARIO SRC DST WANT: mailferry verify exits 0 and reports WANT messages on
# both sides.
verify_check() {
	local sc=$1 json=$W/logs/$1-verify.json rc=0 counts
	mf_verify "$2" "$3" "$json" || rc=$?
	counts=$(python3 -c 'import json,sys
r=json.load(open(sys.argv[1]))
print(sum(m["src_messages"] for m in r["mailboxes"]), sum(m["dst_messages"] for m in r["mailboxes"]), r["missing"])' "$json" 2>/dev/null || echo "? ? ?")
	read -r vs vd vm <<<"$counts"
	if [ $rc -eq 0 ] && [ "$vs" = "$4" ] && [ "$vd" = "$4" ]; then
		check "$sc" "mailferry verify" ok "exit 0; source $vs, destination $vd, missing $vm"
	else
		check "$sc" "mailferry verify" FAIL "exit $rc; source $vs, destination $vd, missing $vm, want $4 (see $json.err)"
	fi
}

count_check() { # count_check SCENARIO TOOL GOT WANT
	if [ "$3" = "$4" ]; then
		check "$1" "$2 message count" ok "$3 of $4"
	else
		check "$1" "$2 message count" FAIL "$3, want $4"
	fi
}

# write_floors SCENARIO ROUND READ_FLOOR_CMD...: times the durable-write floor (writefloor
# into a fresh folder, from FLOOR_MANIFEST) and the combined floor (READ_FLOOR_CMD and another
# writefloor at the same time), and checks that each wrote WANT files.
write_floors() {
	local sc=$1 r=$2
	shift 2
	fresh writefloor
	timed "$sc" writefloor "$r" "count_maildir $OUT" -- "$BIN/writefloor" -manifest "$FLOOR_MANIFEST" -out "$OUT" || true
	fresh combined
	timed "$sc" combined "$r" "count_maildir $OUT" -- "$HERE/together.sh" "$@" --- \
		"$BIN/writefloor" -manifest "$FLOOR_MANIFEST" -out "$OUT" || true
}

# write_floor_notes SCENARIO: the write floor's own account of its last round (where its time
# went, and what a create cost), for the notes.
write_floor_notes() {
	local log=$W/logs/$1-writefloor-$ROUNDS.log
	[ -f "$log" ] || return 0
	note "$1" "writefloor by its own clock, last round: $(grep -h 'files,' "$log" | head -n 1); $(grep -h '^writefloor: overlap' "$log" | sed 's/^writefloor: //')"
}

# ---------------------------------------------------------------------------------------------
scenario_imap_maildir() {
	local sc=imap-maildir want r rr mf=1 lastmf="" lastmb=""
	local floor=("$BIN/imapfloor" -addr "localhost:$IMAPS_PORT" -user alice -password-file "$W/pw-alice" -ca-file "$D/cert.pem" -mode range)
	FLOOR_MANIFEST=$W/manifest-imap
	want=$(count_server alice)
	WANT=$want
	log "$sc: $want messages in alice's mailboxes"
	# Warm-ups: the first access after the corpus was written builds Dovecot's caches.
	fresh mbsync
	peer_mbsync "$OUT" "$OUT.conf"
	timed $sc mbsync 0 - -- "${PEER_CMD[@]}" || true
	timed $sc imapfloor 0 - -- "${floor[@]}" || true
	write_floors $sc 0 "${floor[@]}"
	fresh mailferry
	mf_copy "$SRC_IMAP" "maildir:$OUT" "$OUT.cp"
	if ! timed $sc mailferry 0 - -- "${MF_CMD[@]}"; then
		mf=0
		check $sc "mailferry runs" FAIL "its warm-up run failed (see the notes); only the peers were timed"
	fi
	for r in $(seq "$ROUNDS"); do
		if [ $mf = 1 ]; then
			fresh mailferry
			mf_copy "$SRC_IMAP" "maildir:$OUT" "$OUT.cp"
			timed $sc mailferry "$r" "count_maildir $OUT" -- "${MF_CMD[@]}" || true
			lastmf=$OUT
		fi
		fresh mbsync
		peer_mbsync "$OUT" "$OUT.conf"
		timed $sc mbsync "$r" "count_maildir $OUT" -- "${PEER_CMD[@]}" || true
		lastmb=$OUT
		# The floors: reading everything with the fewest commands, storing nothing; writing
		# the same files durably, reading nothing; and both at once.
		timed $sc imapfloor "$r" - -- "${floor[@]}" || true
		write_floors $sc "$r" "${floor[@]}"
	done
	write_floor_notes $sc
	count_check $sc mbsync "$(count_maildir "$lastmb")" "$want"
	rr=$(head -n 1 "$W/logs/$sc-imapfloor-$ROUNDS.log")
	count_check $sc imapfloor "${rr%% *}" "$want"
	note $sc "imapfloor (UID FETCH of 64 UIDs per command, bodies discarded) by its own clock, last round: $rr"
	if [ $mf = 1 ]; then
		count_check $sc mailferry "$(count_maildir "$lastmf")" "$want"
		verify_check $sc "$SRC_IMAP" "maildir:$lastmf" "$want"
		# Nothing new since the last run: only the listing and the checkpoint remain.
		mf_copy "$SRC_IMAP" "maildir:$lastmf" "$lastmf.cp"
		for rr in 1 2 3; do
			timed $sc mailferry-rerun "$rr" "count_maildir $lastmf" -- "${MF_CMD[@]}" || true
		done
		count_check $sc "mailferry rerun" "$(count_maildir "$lastmf")" "$want"
	fi
}

scenario_pop3_maildir() {
	local sc=pop3-maildir want r mf=1 lastmf="" floorout
	local floor=("$BIN/popfloor" -addr "localhost:$POP3S_PORT" -user alice -password-file "$W/pw-alice" -ca-file "$D/cert.pem")
	FLOOR_MANIFEST=$W/manifest-pop3
	want=$(count_server alice INBOX)
	WANT=$want
	log "$sc: $want messages in alice's INBOX"
	timed $sc popfloor 0 - -- "${floor[@]}" || true
	write_floors $sc 0 "${floor[@]}"
	fresh mailferry
	mf_copy "$SRC_POP3" "maildir:$OUT" "$OUT.cp"
	if ! timed $sc mailferry 0 - -- "${MF_CMD[@]}"; then
		mf=0
		check $sc "mailferry runs" FAIL "its warm-up run failed (see the notes); only the peers were timed"
	fi
	for r in $(seq "$ROUNDS"); do
		if [ $mf = 1 ]; then
			fresh mailferry
			mf_copy "$SRC_POP3" "maildir:$OUT" "$OUT.cp"
			timed $sc mailferry "$r" "count_maildir $OUT" -- "${MF_CMD[@]}" || true
			lastmf=$OUT
		fi
		timed $sc popfloor "$r" - -- "${floor[@]}" || true
		write_floors $sc "$r" "${floor[@]}"
	done
	write_floor_notes $sc
	floorout=$(head -n 1 "$W/logs/$sc-popfloor-$ROUNDS.log")
	count_check $sc popfloor "${floorout%% *}" "$want"
	note $sc "popfloor by its own clock (after login), last round: $floorout"
	if [ $mf = 1 ]; then
		count_check $sc mailferry "$(count_maildir "$lastmf")" "$want"
		verify_check $sc "$SRC_POP3" "maildir:$lastmf" "$want"
	fi
	if [ "$QUICK" = 1 ]; then
		note $sc "getmail skipped (QUICK=1)"
	else
		# getmail is slow (a fork per message): one timed run, no warm-up (the server side is
		# already warm). Its lost-wakeup bug (see peers.sh) can abort a run: retry, and if
		# every attempt dies, extrapolate from the messages delivered before the stall.
		local attempt got wall sum_got=0 sum_wall=0
		for attempt in 1 2 3; do
			fresh getmail
			peer_getmail "$OUT" "$OUT.conf" "$GETMAIL_TIMEOUT"
			if timed $sc getmail "$attempt" "count_maildir $OUT" -- "${PEER_CMD[@]}"; then
				count_check $sc getmail "$(count_maildir "$OUT")" "$want"
				break
			fi
			got=$(count_maildir "$OUT")
			wall=$(awk -F': ' '/Elapsed/{n=split($2,t,":"); s=0; for(i=1;i<=n;i++) s=s*60+t[i]; print s}' "$W/logs/$sc-getmail-$attempt.time")
			note $sc "getmail attempt $attempt died of its lost-wakeup bug after $got of $want messages in $wall s ($GETMAIL_TIMEOUT s of it the stall)"
			sum_got=$((sum_got + got))
			sum_wall=$(awk -v a="$sum_wall" -v w="$wall" -v t="$GETMAIL_TIMEOUT" 'BEGIN{print a + w - t}')
			if [ "$attempt" = 3 ] && [ "$sum_got" -gt 0 ]; then
				printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' $sc getmail-extrapolated 1 \
					"$(awk -v w="$sum_wall" -v g="$sum_got" -v n="$want" 'BEGIN{printf "%.3f", w*n/g}')" \
					0 0 0 0 0 "$sum_got" >>"$RESULTS"
				note $sc "getmail never finished: its time is extrapolated from the $sum_got messages its 3 attempts delivered in $sum_wall s (stalls left out)"
			fi
		done
	fi
}

scenario_imap_imap() {
	local sc=imap-imap want r mf=1
	want=$(count_server alice)
	WANT=$want
	log "$sc: $want messages in alice's mailboxes"
	reset_bob "$W/trash"
	fresh mailferry
	mf_copy "$SRC_IMAP" "$DST_IMAP" "$OUT.cp"
	# Exit 3 means "some messages failed": it can copy, so it is timed, and the failures
	# show in the checks. Anything else (2: no IMAP sink) means it cannot.
	local rc=0
	timed $sc mailferry 0 - -- "${MF_CMD[@]}" || rc=$?
	if [ $rc -ne 0 ] && [ $rc -ne 3 ]; then
		mf=0
		if [ "$EXPLICIT" -eq 0 ]; then
			note $sc "skipped: mailferry cannot copy IMAP -> IMAP (yet); name the scenario to time the peers anyway"
			return 0
		fi
	fi
	if [ "$I2I_PLAIN" = 1 ]; then
		reset_bob "$W/trash"
		fresh mailferry
		mf_copy "$SRC_IMAP_PLAIN" "$DST_IMAP_PLAIN" "$OUT.cp"
		timed $sc mailferry-plain 0 - -- "${MF_CMD[@]}" "${PLAIN_FLAGS[@]}" || true
	fi
	reset_bob "$W/trash"
	peer_dsync
	timed $sc dsync 0 - -- "${PEER_CMD[@]}" || true
	if [[ $I2I_PEERS == *" dsync-tls "* ]]; then
		reset_bob "$W/trash"
		peer_dsync_tls
		timed $sc dsync-tls 0 - -- "${PEER_CMD[@]}" || true
	fi
	if [[ $I2I_PEERS == *" mbsync "* ]]; then
		reset_bob "$W/trash"
		fresh mbsync
		peer_mbsync_i2i "$OUT.state"
		timed $sc mbsync 0 - -- "${PEER_CMD[@]}" || true
	fi
	for r in $(seq "$ROUNDS"); do
		if [ $mf = 1 ]; then
			reset_bob "$W/trash"
			fresh mailferry
			mf_copy "$SRC_IMAP" "$DST_IMAP" "$OUT.cp"
			timed $sc mailferry "$r" "count_server bob" -- "${MF_CMD[@]}" || true
			if [ "$r" = "$ROUNDS" ]; then
				verify_check $sc "$SRC_IMAP" "$DST_IMAP" "$want"
			fi
		fi
		if [ $mf = 1 ] && [ "$I2I_PLAIN" = 1 ]; then
			reset_bob "$W/trash"
			fresh mailferry
			mf_copy "$SRC_IMAP_PLAIN" "$DST_IMAP_PLAIN" "$OUT.cp"
			timed $sc mailferry-plain "$r" "count_server bob" -- "${MF_CMD[@]}" "${PLAIN_FLAGS[@]}" || true
			if [ "$r" = "$ROUNDS" ]; then
				count_check $sc mailferry-plain "$(count_server bob)" "$want"
			fi
		fi
		reset_bob "$W/trash"
		peer_dsync
		timed $sc dsync "$r" "count_server bob" -- "${PEER_CMD[@]}" || true
		if [ "$r" = "$ROUNDS" ]; then
			count_check $sc dsync "$(count_server bob)" "$want"
		fi
		if [[ $I2I_PEERS == *" dsync-tls "* ]]; then
			reset_bob "$W/trash"
			peer_dsync_tls
			timed $sc dsync-tls "$r" "count_server bob" -- "${PEER_CMD[@]}" || true
		fi
		if [[ $I2I_PEERS == *" mbsync "* ]]; then
			reset_bob "$W/trash"
			fresh mbsync
			peer_mbsync_i2i "$OUT.state"
			timed $sc mbsync "$r" "count_server bob" -- "${PEER_CMD[@]}" || true
			if [ "$r" = "$ROUNDS" ]; then
				count_check $sc mbsync "$(count_server bob)" "$want"
			fi
		fi
	done
	reset_bob "$W/trash"
}

# ---------------------------------------------------------------------------------------------
main() {
	local t0 sc corpus mfver
	t0=$(date +%s)
	[ "$(id -u)" = 0 ] || { log "needs root (apt-get, chown to vmail, runuser)"; exit 2; }
	# One bench per BENCH_DIR at a time: the start below moves a previous run's folder aside
	# and stops its Dovecot, which must never be another bench's that is still running.
	mkdir -p "$(dirname "$D")"
	exec 9>"$D.lock"
	if ! flock -n 9; then
		log "another bench is running in $D; waiting for it (set BENCH_DIR and DOVECOT_*_PORT to run beside it)"
		flock 9
	fi
	install_tools
	mkdir -p "$BIN"
	log "building mailferry and the floors into $BIN"
	(cd "$ROOT" && go build -o "$BIN/popfloor" ./testdata/bench/popfloor && go build -o "$BIN/imapfloor" ./testdata/bench/imapfloor &&
		go build -o "$BIN/writefloor" ./testdata/bench/writefloor && go build -o "$BIN/changefloor" ./testdata/bench/changefloor)
	rm -f "$BIN/mailferry"
	if [ -n "${MAILFERRY_BIN:-}" ]; then
		cp "$MAILFERRY_BIN" "$BIN/mailferry"
	elif ! (cd "$ROOT" && go build -o "$BIN/mailferry" ./cmd/mailferry) 2>"$BIN/build.err"; then
		log "mailferry does not build; timing the peers only:"
		cat "$BIN/build.err" >&2
		printf '#!/bin/sh\necho "mailferry did not build" >&2\nexit 1\n' >"$BIN/mailferry"
		chmod +x "$BIN/mailferry"
	fi
	mfver=$(cd "$ROOT" && git describe --always --dirty 2>/dev/null || echo unknown)
	[ -z "${MAILFERRY_BIN:-}" ] || mfver="$mfver, binary $MAILFERRY_BIN"

	# A previous run's server and outputs are moved aside, not deleted, and deleted only after
	# the timed runs: on ext4 without a journal (this machine's), every file created in a
	# block group where thousands of inodes were freed in the last minutes costs the kernel a
	# scan past them (docs/performance.md), and the first scenario would pay for it.
	if [ -e "$D" ]; then
		bash "$ROOT/testdata/dovecot/dovecot.sh" stop "$D" >/dev/null 2>&1 || true
		OLD=$(dirname "$D")/.$(basename "$D").old-$$
		mv "$D" "$OLD"
	fi
	# Without the crash tests' mail_log plugin: it reads every message an IMAP session saves
	# (for its Message-ID) and doveadm's saves (dsync's) do not load it.
	DOVECOT_MAIL_LOG=0 bash "$ROOT/testdata/dovecot/dovecot.sh" start "$D"
	trap 'bash "$ROOT/testdata/dovecot/dovecot.sh" stop "$D" || true; [ -z "$OLD" ] || rm -rf "$OLD"' EXIT
	rm -rf "$W"
	mkdir -p "$W/logs" "$W/out" "$W/trash"
	chmod 755 "$W" "$W/out"
	: >"$RESULTS"
	: >"$CHECKS"
	: >"$NOTES"
	for u in alice bob; do
		printf 'pw-%s\n' "$u" >"$W/pw-$u"
		chmod 600 "$W/pw-$u"
	done

	# The nightly scenarios write their own accounts (nightly.sh): the corpus only for the others.
	if [[ " ${SCENARIOS[*]} " != *" imap-maildir "* && " ${SCENARIOS[*]} " != *" pop3-maildir "* &&
		" ${SCENARIOS[*]} " != *" imap-imap "* && " ${SCENARIOS[*]} " != *" sync-"[mi]* ]]; then
		MESSAGES=0
	fi
	log "writing the corpus ($MESSAGES messages, seed $CORPUS_SEED) into alice's Maildir"
	corpus=$(python3 "$HERE/gencorpus.py" "$D/home/alice/Maildir" "$MESSAGES" --seed "$CORPUS_SEED")
	chown -R vmail:vmail "$D/home"
	# Build Dovecot's indexes and caches once, untimed: index, then fetch what IMAP and POP3
	# clients ask for (sizes, dates, flags; POP3 needs the virtual sizes of the INBOX).
	doveadm -c "$CONF" force-resync -u alice '*'
	doveadm -c "$CONF" fetch -u alice 'uid flags date.received size.physical size.virtual' ALL >/dev/null
	# What the write floor writes: each message's size, folder and cur/ or new/ (IMAP), and
	# the INBOX alone for POP3 (no flags: everything in new/). The corpus has CRLF line
	# endings, so the sizes are the bytes the servers send and mailferry stores.
	"$BIN/writefloor" -scan "$D/home/alice/Maildir" >"$W/manifest-imap"
	"$BIN/writefloor" -scan "$D/home/alice/Maildir" -inbox-only >"$W/manifest-pop3"
	sync

	fs_probe start
	for sc in "${SCENARIOS[@]}"; do
		local sc0=$SECONDS
		log "=== $sc ($ROUNDS rounds)"
		case $sc in
		imap-maildir) scenario_imap_maildir ;;
		pop3-maildir) scenario_pop3_maildir ;;
		imap-imap) scenario_imap_imap ;;
		nightly) scenario_nightly ;;
		nightly-200k) scenario_nightly_200k ;;
		sync-maildir) scenario_sync_maildir ;;
		sync-imap) scenario_sync_imap ;;
		sync-200k) scenario_sync_200k ;;
		esac
		note "$sc" "the scenario took $((SECONDS - sc0)) s, setup (corpus, accounts, checks) included"
	done

	fs_probe end
	[ "$BUSY_STARTS" -eq 0 ] || note all "$BUSY_STARTS timed run(s) started while the machine was still busy (waits: ${QUIET_WAIT} s per run, $QUIET_BUDGET s in all; see the other CPU column)"
	python3 "$HERE/report.py" --results "$RESULTS" --checks "$CHECKS" --notes "$NOTES" \
		--meta "date=$(date -u '+%Y-%m-%d %H:%M UTC')" \
		--meta "command=bash testdata/bench/bench.sh $*" \
		--meta "rounds=$ROUNDS (after one untimed warm-up each; QUICK=$QUICK)" \
		--meta "machine=$(nproc) cores ($(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo)), $(awk '/MemTotal/{printf "%.1f GiB", $2/1048576}' /proc/meminfo) RAM, Linux $(uname -r), $(df -T "$W" | awk 'NR==2{print $2}') on $(df "$W" | awk 'NR==2{print $1}')" \
		--meta "corpus=$corpus (gencorpus.py seed $CORPUS_SEED)" \
		--meta "versions=mailferry $mfver ($(go version | awk '{print $3}')), Dovecot $(dovecot --version | awk '{print $1}'), $(mbsync --version 2>&1 | head -n 1), getmail $(getmail --version 2>&1 | awk '{print $2; exit}'), OfflineIMAP $(offlineimap --version 2>&1 | head -n 1)" \
		--meta "mailferry flags=${MAILFERRY_FLAGS:-(defaults)}" \
		--meta "bench wall time=$(($(date +%s) - t0)) s" | tee "$HERE/last-result.md"
	clean_outputs
	if grep -q FAIL "$CHECKS"; then
		log "some correctness checks failed (see above)"
		exit 1
	fi
}

main "$@"
