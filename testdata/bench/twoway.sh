# shellcheck shell=bash
# Issue 12's scenarios for bench.sh (sourced, not run): `mailferry sync` against the two-way peers.
#
#   sync-maildir  IMAP <-> Maildir: mailferry sync, mbsync (Sync All, Create Both, Expunge Both)
#                 and OfflineIMAP
#   sync-imap     IMAP <-> IMAP: mailferry sync and mbsync with two IMAP stores
#   sync-200k     IMAP <-> Maildir, 200,000 small messages in 10 folders (nightly-200k's
#                 account): mailferry's first sync and its no-op sync, for peak RSS (mailferry only)
#
# Every tool gets its own copy of the account (a Dovecot user per tool and round, the message
# files hard-linked from the corpus: mailchange.py clone), so all start from the same mail.
# Three phases, each timed for every tool in the same round, tools alternating:
#   first    the first sync of the 5,000-message corpus (one side full, the other empty); one
#            fresh pair per tool and round
#   changes  on the last round's pairs: before each round the same changes are applied to every
#            tool's pair, 1 % on each side (a third new messages, a third \Flagged toggled, a
#            third deleted; mailchange.py picks them by a hash of the Message-ID), then each tool
#            syncs; next to them, in the same rounds, their floor (tool "changefloor",
#            changefloor/): the least any tool must do to bring both sides in step after
#            those changes, on its own pair (a copy of mailferry's after its first sync) that
#            gets the same changes; it is told untimed what changed (mailchange.py --record)
#            and where each message is on the other side (changefloor plan), and its timed
#            part (changefloor apply) does the servers' and the disk's work: login,
#            LIST-STATUS, SELECT (QRESYNC) of each changed folder, FETCH of the new bodies,
#            the STOREs, UID EXPUNGE, MULTIAPPEND, LOGOUT, every command written before any
#            answer is read; the Maildir's readdirs, renames, unlinks, new files and fsyncs;
#            and "changefloor-wait" on a pair of its own, the same but waiting for LOGIN's and
#            each SELECT's answer before writing on, as a tool that checks the capabilities
#            and each folder's UIDVALIDITY before writing does (what those round trips cost)
#   noop     a sync with nothing changed, next to its login floor (tool "noopfloor", the same
#            rounds): what any tool must do to learn that nothing moved, a process that logs in
#            over TLS, asks every folder's status in one LIST-STATUS and logs out
#            (imapfloor -mode status), on the IMAP side; for IMAP <-> IMAP both sides at once,
#            as mailferry does (sync_floor_cmd)
# After every timed sync (the floors' too) both sides must hold the expected number of
# messages and the same number of \Flagged ones: a tool that silently did nothing does not look
# fast. mailferry's and the floors' misses fail the bench; a peer's are noted. Needs what
# bench.sh and nightly.sh define.
# shellcheck disable=SC2154 # D, W, BIN, CONF, IMAPS_PORT, ROUNDS, QUICK, OUT, WANT come from bench.sh

SYNC_PERMILLE=${SYNC_PERMILLE:-10}
SYNC_MD_TOOLS=${SYNC_MD_TOOLS:-mailferry mbsync offlineimap}
SYNC_I2I_TOOLS=${SYNC_I2I_TOOLS:-mailferry mbsync}

# sync_account USER FROM: USER's Maildir is a copy of FROM's (same messages, same UIDs).
sync_account() {
	add_user "$1"
	rm -rf "$D/home/$1/Maildir"
	python3 "$HERE/mailchange.py" clone "$D/home/$2/Maildir" "$D/home/$1/Maildir"
	chown -R vmail:vmail "$D/home/$1"
}

# sync_cmd KIND TOOL A B STATE: leaves in PEER_CMD the command that syncs A (an IMAP user) with
# B (KIND maildir: a Maildir path; KIND imap: another IMAP user). STATE is a folder the tool's
# state and config go into.
sync_cmd() {
	local kind=$1 tool=$2 a=$3 b=$4 st=$5
	mkdir -p "$st"
	case $tool:$kind in
	mailferry:maildir)
		PEER_CMD=("$BIN/mailferry" sync "imaps://$a@localhost:$IMAPS_PORT" "maildir:$b" --src-password-file "$W/pw-$a"
			--ca-file "$D/cert.pem" --checkpoint "$st/state" --quiet "${MF_FLAGS[@]}")
		;;
	mailferry:imap)
		PEER_CMD=("$BIN/mailferry" sync "imaps://$a@localhost:$IMAPS_PORT" "imaps://$b@localhost:$IMAPS_PORT"
			--src-password-file "$W/pw-$a" --dst-password-file "$W/pw-$b"
			--ca-file "$D/cert.pem" --checkpoint "$st/state" --quiet "${MF_FLAGS[@]}")
		;;
	mbsync:maildir) peer_mbsync_sync "$a" "$b" "$st" ;;
	mbsync:imap) peer_mbsync_sync_i2i "$a" "$b" "$st" ;;
	offlineimap:maildir) peer_offlineimap "$a" "$b" "$st" ;;
	*)
		log "no $tool for $kind"
		return 1
		;;
	esac
}

# sync_floor_cmd KIND A B: the login floor of a no-op sync of A with B in FLOOR_CMD: imapfloor
# -mode status on A, and for KIND imap on B too, both at once (the wall time is the slower's).
sync_floor_cmd() {
	local one=("$BIN/imapfloor" -addr "localhost:$IMAPS_PORT" -ca-file "$D/cert.pem" -mode status)
	if [ "$1" = maildir ]; then
		FLOOR_CMD=("${one[@]}" -user "$2" -password-file "$W/pw-$2")
		return
	fi
	# shellcheck disable=SC2016 # expanded by the inner shell
	FLOOR_CMD=(bash -c '"${@:3}" -user "$1" -password-file "$W/pw-$1" & a=$!; "${@:3}" -user "$2" -password-file "$W/pw-$2"; b=$?; wait $a && exit $b'
		floor "$2" "$3" "${one[@]}")
	FLOOR_CMD=(env "W=$W" "${FLOOR_CMD[@]}")
}

# side_counts KIND A B: "messages_A messages_B flagged_A flagged_B".
side_counts() {
	local fa fb
	fa=$(doveadm -c "$CONF" search -u "$2" flagged 2>/dev/null | wc -l)
	if [ "$1" = maildir ]; then
		fb=$(python3 "$HERE/mailchange.py" flagged "$3")
		echo "$(count_server "$2") $(count_maildir "$3") $fa $fb"
	else
		fb=$(doveadm -c "$CONF" search -u "$3" flagged 2>/dev/null | wc -l)
		echo "$(count_server "$2") $(count_server "$3") $fa $fb"
	fi
}

# in_step SCENARIO TOOL WHAT KIND A B WANT: both sides hold WANT messages and as many \Flagged.
in_step() {
	local sc=$1 tool=$2 what=$3 ma mb fa fb ok=ok
	read -r ma mb fa fb <<<"$(side_counts "$4" "$5" "$6")"
	[ "$ma" = "$7" ] && [ "$mb" = "$7" ] && [ "$fa" = "$fb" ] || ok=FAIL
	local detail="A $ma, B $mb messages (want $7); flagged A $fa, B $fb"
	case $tool in
	mailferry | changefloor*) check "$sc" "$tool $what in step" "$ok" "$detail" ;;
	*) [ "$ok" = ok ] || note "$sc" "$tool $what not in step: $detail" ;;
	esac
	[ "$ok" = ok ]
}

# side_b KIND SCENARIO TOOL ROUND: B's name (a user or a Maildir path), created empty.
side_b() {
	if [ "$1" = maildir ]; then
		fresh "$2-$3-$4"
		mkdir -p "$OUT"
		SIDE_B=$OUT
	else
		SIDE_B=${2/sync-/}b$3$4
		SIDE_B=${SIDE_B//[^a-z0-9]/}
		add_user "$SIDE_B"
	fi
}

# apply_changes KIND A B TAG [RECORD]: the same 1 % changes on each side; leaves in
# CHANGED_WANT how many messages the two sides then should hold, given WANT before. With
# RECORD, what was done on each side goes to RECORD-a.json and RECORD-b.json (for the floor).
apply_changes() {
	local kind=$1 a=$2 b=$3 tag=$4 out_a out_b n=$WANT ra=() rb=()
	[ -z "${5:-}" ] || ra=(--record "$5-a.json") rb=(--record "$5-b.json")
	out_a=$(python3 "$HERE/mailchange.py" imap localhost "$IMAPS_PORT" "$a" "$W/pw-$a" "$D/cert.pem" "S$tag" "$SYNC_PERMILLE" "${ra[@]}")
	if [ "$kind" = maildir ]; then
		out_b=$(python3 "$HERE/mailchange.py" maildir "$b" "$(sync_inbox_dir "$b")" "L$tag" "$SYNC_PERMILLE" "${rb[@]}")
	else
		out_b=$(python3 "$HERE/mailchange.py" imap localhost "$IMAPS_PORT" "$b" "$W/pw-$b" "$D/cert.pem" "L$tag" "$SYNC_PERMILLE" "${rb[@]}")
	fi
	CHANGES="A: $out_a; B: $out_b"
	for o in "$out_a" "$out_b"; do
		n=$((n + $(sed 's/.*new=\([0-9]*\).*/\1/' <<<"$o") - $(sed 's/.*delete=\([0-9]*\).*/\1/' <<<"$o")))
	done
	CHANGED_WANT=$n
}

# floor_pair KIND SC A B FLOOR: FLOOR's own pair, a copy of A and B (mailferry's, in step after
# its first and no-op syncs): FLOOR_A (a user) and FLOOR_B (a Maildir path or a user).
floor_pair() {
	local k=fl
	[ "$5" = changefloor ] || k=fw
	FLOOR_A=${2/sync-/}a$k
	sync_account "$FLOOR_A" "$3"
	if [ "$1" = maildir ]; then
		fresh "$2-$5"
		FLOOR_B=$OUT
		python3 "$HERE/mailchange.py" clone "$4" "$FLOOR_B"
	else
		FLOOR_B=${2/sync-/}b$k
		sync_account "$FLOOR_B" "$4"
	fi
}

# floor_plan KIND A B RECORD: the floor's untimed pre-pass for the changes in RECORD-[ab].json:
# its plan in RECORD.plan.
floor_plan() {
	local args=("$BIN/changefloor" plan -addr "localhost:$IMAPS_PORT" -ca-file "$D/cert.pem" -a "$2" -a-password-file "$W/pw-$2"
		-a-record "$4-a.json" -b-record "$4-b.json" -out "$4.plan")
	if [ "$1" = maildir ]; then
		args+=(-maildir "$3" -maildir-inbox "$(sync_inbox_dir "$3")")
	else
		args+=(-b "$3" -b-password-file "$W/pw-$3")
	fi
	"${args[@]}"
}

# sync_inbox_dir DIR: where a Maildir tree's INBOX is (mailferry: the root, Maildir++; mbsync
# and OfflineIMAP: DIR/INBOX).
sync_inbox_dir() {
	if [ -d "$1/INBOX/cur" ]; then echo "$1/INBOX"; else echo "$1"; fi
}

# sync_scenario SC KIND TOOLS...: the three phases for one kind of pair.
sync_scenario() {
	local sc=$1 kind=$2 t r a first_rounds=$ROUNDS
	shift 2
	local tools=("$@")
	local -A A B ST
	WANT=$(count_server alice)
	# OfflineIMAP's first sync of the corpus takes half a minute on this machine: QUICK does one
	# round when it is among the tools.
	[ "$QUICK" = 1 ] && [[ " ${tools[*]} " == *" offlineimap "* ]] && first_rounds=1
	log "$sc: ${tools[*]}: first sync of $WANT messages ($first_rounds round(s)), then $ROUNDS rounds of changes and of no-op syncs"
	for r in $(seq "$first_rounds"); do
		for t in "${tools[@]}"; do
			a=${sc/sync-/}a${t:0:2}$r
			a=${a//[^a-z0-9]/}
			sync_account "$a" alice
			side_b "$kind" "$sc" "${t:0:2}" "$r"
			A[$t]=$a B[$t]=$SIDE_B ST[$t]=$W/out/$sc-$t-$r.state
		done
		for t in "${tools[@]}"; do
			sync_cmd "$kind" "$t" "${A[$t]}" "${B[$t]}" "${ST[$t]}"
			timed "$sc" "$t-first" "$r" - -- "${PEER_CMD[@]}" || true
			in_step "$sc" "$t" "after the first sync (round $r)" "$kind" "${A[$t]}" "${B[$t]}" "$WANT" || true
		done
	done
	# Warm-up: one untimed sync with nothing changed (tools' second run settles their state).
	for t in "${tools[@]}"; do
		sync_cmd "$kind" "$t" "${A[$t]}" "${B[$t]}" "${ST[$t]}"
		timed "$sc" "$t-noop" 0 - -- "${PEER_CMD[@]}" || true
	done
	local base=$WANT rec fl floors=()
	declare -A WANT_T
	for t in "${tools[@]}"; do WANT_T[$t]=$base; done
	# The change floors' pairs: copies of mailferry's, which is in step now.
	[ -z "${A[mailferry]:-}" ] || floors=(changefloor changefloor-wait)
	for fl in "${floors[@]}"; do
		floor_pair "$kind" "$sc" "${A[mailferry]}" "${B[mailferry]}" "$fl"
		A[$fl]=$FLOOR_A B[$fl]=$FLOOR_B WANT_T[$fl]=$base
	done
	for r in $(seq "$ROUNDS"); do
		for t in "${tools[@]}"; do
			WANT=${WANT_T[$t]}
			apply_changes "$kind" "${A[$t]}" "${B[$t]}" "$r"
			WANT_T[$t]=$CHANGED_WANT
			[ "$t" != "${tools[0]}" ] || note "$sc" "changes before round $r: $CHANGES"
		done
		for fl in "${floors[@]}"; do
			WANT=${WANT_T[$fl]}
			apply_changes "$kind" "${A[$fl]}" "${B[$fl]}" "$r" "$W/out/$sc-$fl-$r"
			WANT_T[$fl]=$CHANGED_WANT
		done
		for t in "${tools[@]}"; do
			sync_cmd "$kind" "$t" "${A[$t]}" "${B[$t]}" "${ST[$t]}"
			timed "$sc" "$t-changes" "$r" - -- "${PEER_CMD[@]}" || true
			in_step "$sc" "$t" "after changes round $r" "$kind" "${A[$t]}" "${B[$t]}" "${WANT_T[$t]}" || true
		done
		for fl in "${floors[@]}"; do
			rec=$W/out/$sc-$fl-$r
			if ! floor_plan "$kind" "${A[$fl]}" "${B[$fl]}" "$rec" >"$rec.plan.log" 2>&1; then
				check "$sc" "$fl plan round $r" FAIL "$(tail -n 1 "$rec.plan.log")"
				continue
			fi
			local wait=()
			[ "$fl" = changefloor ] || wait=(-wait)
			timed "$sc" "$fl" "$r" - -- "$BIN/changefloor" apply "${wait[@]}" "$rec.plan" || true
			in_step "$sc" "$fl" "after changes round $r" "$kind" "${A[$fl]}" "${B[$fl]}" "${WANT_T[$fl]}" || true
		done
	done
	for fl in "${floors[@]}"; do
		note "$sc" "$fl (what any tool must do on the servers and the disk after that round's changes, told what changed; changefloor/$([ "$fl" = changefloor ] || echo ', waiting for LOGIN and each SELECT')) by its own clock, last round: $(head -n 1 "$W/logs/$sc-$fl-$ROUNDS.log")"
	done
	sync_floor_cmd "$kind" "${A[mailferry]}" "${B[mailferry]}"
	timed "$sc" noopfloor 0 - -- "${FLOOR_CMD[@]}" || true
	for r in $(seq "$ROUNDS"); do
		for t in "${tools[@]}"; do
			sync_cmd "$kind" "$t" "${A[$t]}" "${B[$t]}" "${ST[$t]}"
			timed "$sc" "$t-noop" "$r" - -- "${PEER_CMD[@]}" || true
		done
		timed "$sc" noopfloor "$r" - -- "${FLOOR_CMD[@]}" || true
	done
	note "$sc" "noopfloor (TLS login, one LIST-STATUS of every folder, LOGOUT; per IMAP side, at once) by its own clock, last round: $(head -n 1 "$W/logs/$sc-noopfloor-$ROUNDS.log")"
	for t in "${tools[@]}"; do
		in_step "$sc" "$t" "after the no-op syncs" "$kind" "${A[$t]}" "${B[$t]}" "${WANT_T[$t]}" || true
	done
	WANT=$base
}

scenario_sync_maildir() {
	read -r -a t <<<"$SYNC_MD_TOOLS"
	sync_scenario sync-maildir maildir "${t[@]}"
}

scenario_sync_imap() {
	read -r -a t <<<"$SYNC_I2I_TOOLS"
	sync_scenario sync-imap imap "${t[@]}"
}

scenario_sync_200k() {
	local sc=sync-200k a=sbig r
	big_account n200 "$NIGHTLY_BIG" "$NIGHTLY_BIG_FOLDERS"
	sync_account $a n200
	WANT=$(count_server $a)
	log "$sc: $WANT messages in $a's account"
	fresh sync200k
	mkdir -p "$OUT"
	sync_cmd maildir mailferry $a "$OUT" "$OUT.state"
	timed $sc mailferry-first 1 - -- "${PEER_CMD[@]}" || true
	in_step $sc mailferry "after the first sync" maildir $a "$OUT" "$WANT" || true
	for r in $(seq 0 "$ROUNDS"); do
		timed $sc mailferry-noop "$r" - -- "${PEER_CMD[@]}" || true
	done
	in_step $sc mailferry "after the no-op syncs" maildir $a "$OUT" "$WANT" || true
}
