# shellcheck shell=bash
# Issue 11's scenarios for bench.sh (sourced, not run): a nightly run over a large account.
#
#   nightly       50,000 small messages in one folder, IMAP -> Maildir: mailferry's first copy,
#                 then its no-op rerun against mbsync's no-op rerun of the same account and
#                 the no-op's floor (alternating), then per round one new message and one \Flagged set by another
#                 client (doveadm): the rerun must store the message and put the flag on the
#                 Maildir copy (both checked); mbsync does the same rerun, for information
#   nightly-200k  200,000 small messages in 10 folders: mailferry's first copy and its no-op
#                 rerun (peak RSS of both, and the rerun's time), next to the no-op's floor
#
# The no-op's floor (tool "noopfloor") is the least a rerun must do to learn that nothing
# moved: imapfloor -mode status, a process that logs in over TLS, asks every folder's status
# in one LIST-STATUS (or pipelined STATUS) and logs out; it reads no state and writes nothing.
#
# The accounts are written straight into Dovecot's Maildir by genbig.py (small bodies: these
# scenarios measure the cost per message of listing and state, not of bodies) and indexed once
# by doveadm before anything is timed. Needs what bench.sh defines (timed, fresh, check, note,
# count_maildir, count_server, D, W, BIN, CONF, IMAPS_PORT, ROUNDS).
# shellcheck disable=SC2154 # D, W, BIN, CONF, IMAPS_PORT, ROUNDS, OUT, WANT come from bench.sh

NIGHTLY_MESSAGES=${NIGHTLY_MESSAGES:-50000}
NIGHTLY_BIG=${NIGHTLY_BIG:-200000}
NIGHTLY_BIG_FOLDERS=${NIGHTLY_BIG_FOLDERS:-10}

# add_user NAME...: more Dovecot users (password pw-NAME, file $W/pw-NAME). Dovecot re-reads
# its passwd-file at most once a second (see testdata/dovecot/dovecot.sh): wait until each logs in.
add_user() {
	local u _
	for u in "$@"; do
		grep -q "^$u:" "$D/users" && continue
		echo "$u:{PLAIN}pw-$u:$(id -u vmail):$(id -g vmail)::$D/home/$u::" >>"$D/users"
		mkdir -p "$D/home/$u"
		chown vmail:vmail "$D/home/$u"
		chmod 700 "$D/home/$u"
		printf 'pw-%s\n' "$u" >"$W/pw-$u"
		chmod 600 "$W/pw-$u"
	done
	for _ in $(seq 50); do
		doveadm -c "$CONF" auth test "${@: -1}" "pw-${*: -1}" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	log "user ${*: -1} cannot log in"
	return 1
}

# index_user USER: Dovecot indexes the account and caches what the clients ask for (flags,
# sizes, dates), untimed.
index_user() {
	doveadm -c "$CONF" force-resync -u "$1" '*'
	doveadm -c "$CONF" fetch -u "$1" 'uid flags date.received size.virtual' ALL >/dev/null
}

# big_account USER TOTAL FOLDERS: USER holds TOTAL generated messages in FOLDERS folders
# (written once per bench run; later scenarios reuse it).
big_account() {
	local u=$1 t0=$SECONDS
	[ -f "$W/account-$u" ] && return 0
	add_user "$u"
	python3 "$HERE/genbig.py" "$D/home/$u/Maildir" "$2" --folders "$3" --prefix "$u" >"$W/account-$u.tmp"
	chown -R vmail:vmail "$D/home/$u"
	index_user "$u"
	sync
	mv "$W/account-$u.tmp" "$W/account-$u"
	log "$u: $(cat "$W/account-$u") (written and indexed in $((SECONDS - t0)) s)"
}

# mf_copy_user USER DST CHECKPOINT: like mf_copy, from USER's account.
mf_copy_user() {
	MF_CMD=("$BIN/mailferry" copy "imaps://$1@localhost:$IMAPS_PORT" "$2" --src-password-file "$W/pw-$1"
		--ca-file "$D/cert.pem" --checkpoint "$3" --progress never --quiet "${MF_FLAGS[@]}")
}

# noop_floor USER: the no-op floor's command for USER's account, in FLOOR_CMD.
noop_floor() {
	FLOOR_CMD=("$BIN/imapfloor" -addr "localhost:$IMAPS_PORT" -user "$1" -password-file "$W/pw-$1" -ca-file "$D/cert.pem" -mode status)
}

# maildir_file DIR MESSAGE_ID prints the file under DIR holding MESSAGE_ID (first match).
maildir_file() {
	# head's early exit may end grep with SIGPIPE: not a failure here.
	grep -rlF -m 1 "Message-ID: $2" "$1" 2>/dev/null | grep -E '/(cur|new)/' | head -n 1 || true
}

# unflagged_uid USER PREFIX START: the UID and Message-ID of the first INBOX message from
# number START on that is not \Flagged (genbig.py's Message-IDs are <PREFIX.n@big.example>).
unflagged_uid() {
	local k=$3 line
	while [ "$k" -lt $(($3 + 100)) ]; do
		line=$(doveadm -c "$CONF" fetch -u "$1" 'uid flags' mailbox INBOX header Message-ID "<$2.$k@big.example>" 2>/dev/null | tr '\n' ' ')
		if [ -n "$line" ] && [[ $line != *'\Flagged'* ]]; then
			echo "$(awk '{for(i=1;i<NF;i++) if($i=="uid:") print $(i+1)}' <<<"$line") <$2.$k@big.example>"
			return 0
		fi
		k=$((k + 1))
	done
	return 1
}

# nightly_change USER ROUND: another client stores one new message in INBOX and sets \Flagged
# on one message that did not have it. Leaves the two Message-IDs in NEW_MID and FLAG_MID.
nightly_change() {
	local u=$1 r=$2 uid
	NEW_MID="<nightly.$r.$$@bench.example>"
	printf 'From: Bench <bench@example.org>\r\nTo: %s@example.net\r\nSubject: new tonight, round %s\r\nDate: %s\r\nMessage-ID: %s\r\n\r\nOne new message since the last run.\r\n' \
		"$u" "$r" "$(date -R)" "$NEW_MID" | doveadm -c "$CONF" save -u "$u" -m INBOX
	read -r uid FLAG_MID <<<"$(unflagged_uid "$u" "$u" $(((1000 + r * 137) % (NIGHTLY_MESSAGES - 100))) || true)"
	if [ -z "$FLAG_MID" ]; then
		FLAG_MID="(none: no unflagged message found)"
		return 0
	fi
	doveadm -c "$CONF" flags add -u "$u" '\Flagged' mailbox INBOX uid "$uid"
}

# change_check SCENARIO TOOL ROUND DIR: the new message is in DIR, and the flagged one's copy
# carries F.
change_check() {
	local f g
	f=$(maildir_file "$4" "$NEW_MID")
	g=$(maildir_file "$4" "$FLAG_MID")
	local ok=ok detail="new message stored ($(basename "${f:-none}")); flag on $FLAG_MID's copy"
	[ -n "$f" ] || { ok=FAIL; detail="new message $NEW_MID not in the Maildir"; }
	if [ -z "$g" ]; then
		ok=FAIL
		detail="$detail; $FLAG_MID has no copy"
	elif [[ ${g##*:2,} != *F* ]] || [[ $g != *:2,* ]]; then
		ok=FAIL
		detail="$detail: missing (file $(basename "$g"))"
	fi
	case $2 in
	mailferry*) check "$1" "$2 round $3 copied the new message and the flag" "$ok" "$detail" ;;
	*) [ "$ok" = ok ] || note "$1" "$2 round $3: $detail" ;;
	esac
}

scenario_nightly() {
	local sc=nightly u=n50 mfout mbout r
	big_account $u "$NIGHTLY_MESSAGES" 1
	WANT=$(count_server $u)
	log "$sc: $WANT messages in $u's INBOX"
	fresh nightly-mailferry
	mfout=$OUT
	mf_copy_user $u "maildir:$mfout" "$mfout.cp"
	# The first copy is timed once (its peak RSS counts), then once more as a rerun that
	# records the folders' statuses for the next runs (both are "copy" rows: round 1 and 2).
	timed $sc mailferry-copy 1 "count_maildir $mfout" -- "${MF_CMD[@]}" || true
	# mbsync's first copy only prepares the state its no-op reruns start from: untimed, and
	# without its fsync per message (minutes on a busy machine); the reruns keep the default.
	fresh nightly-mbsync
	mbout=$OUT
	peer_mbsync_user $u "$mbout" "$mbout.conf" no
	"${PEER_CMD[@]}" >"$W/logs/$sc-mbsync-setup.log" 2>&1 || note $sc "mbsync's first copy failed (exit $?)"
	# That copy left 50,000 files unsynced; flush them now, or the first timed run that syncs
	# (mailferry's commit is one syncfs of the file system) would write them out for mbsync.
	sync
	peer_mbsync_user $u "$mbout" "$mbout.conf"
	timed $sc mailferry-copy 2 "count_maildir $mfout" -- "${MF_CMD[@]}" || true
	# No-op reruns: one untimed warm-up each, then alternating, with the floor.
	noop_floor $u
	for r in $(seq 0 "$ROUNDS"); do
		timed $sc mailferry-noop "$r" "count_maildir $mfout" -- "${MF_CMD[@]}" || true
		timed $sc mbsync-noop "$r" "count_maildir $mbout" -- "${PEER_CMD[@]}" || true
		timed $sc noopfloor "$r" - -- "${FLOOR_CMD[@]}" || true
	done
	note $sc "noopfloor (TLS login, one LIST-STATUS of every folder, LOGOUT) by its own clock, last round: $(head -n 1 "$W/logs/$sc-noopfloor-$ROUNDS.log")"
	count_check $sc "mailferry no-op rerun" "$(count_maildir "$mfout")" "$WANT"
	count_check $sc "mbsync no-op rerun" "$(count_maildir "$mbout")" "$WANT"
	# One new message and one flag change per round, set by another client (doveadm).
	for r in $(seq "$ROUNDS"); do
		nightly_change $u "$r"
		WANT=$((WANT + 1))
		timed $sc mailferry-change "$r" "count_maildir $mfout" -- "${MF_CMD[@]}" || true
		change_check $sc mailferry-change "$r" "$mfout"
		timed $sc mbsync-change "$r" "count_maildir $mbout" -- "${PEER_CMD[@]}" || true
		change_check $sc mbsync-change "$r" "$mbout"
	done
}

scenario_nightly_200k() {
	local sc=nightly-200k u=n200 mfout r
	big_account $u "$NIGHTLY_BIG" "$NIGHTLY_BIG_FOLDERS"
	WANT=$(count_server $u)
	log "$sc: $WANT messages in $u's $NIGHTLY_BIG_FOLDERS folders"
	fresh nightly200k-mailferry
	mfout=$OUT
	mf_copy_user $u "maildir:$mfout" "$mfout.cp"
	timed $sc mailferry-copy 1 "count_maildir $mfout" -- "${MF_CMD[@]}" || true
	timed $sc mailferry-copy 2 "count_maildir $mfout" -- "${MF_CMD[@]}" || true
	noop_floor $u
	for r in $(seq 0 "$ROUNDS"); do
		timed $sc mailferry-noop "$r" "count_maildir $mfout" -- "${MF_CMD[@]}" || true
		timed $sc noopfloor "$r" - -- "${FLOOR_CMD[@]}" || true
	done
	count_check $sc "mailferry no-op rerun" "$(count_maildir "$mfout")" "$WANT"
}
