# shellcheck shell=bash
# Peer tools' command lines for bench.sh (sourced, not run).
# Two-way peers (issue 12): mbsync with Sync All, Create Both, Expunge Both; OfflineIMAP.
#
# The peers are run with the options of the measurements behind docs/performance.md (mbsync
# with its default fsync, getmail6 leaving mail on the server, dsync through imapc). Each
# function writes its config into a folder the caller owns (fresh per run), and the ports
# come from bench.sh. Every
# function prints nothing and leaves the command to time in the array PEER_CMD.
#
# Needs: D (Dovecot folder with cert.pem and dovecot.conf), IMAP_PORT, IMAPS_PORT, POP3S_PORT.
# shellcheck disable=SC2034 # PEER_CMD is read by bench.sh

# peer_mbsync OUT CONF_DIR: IMAP alice -> Maildir OUT (fsync on, mbsync's default).
peer_mbsync() {
	local out=$1 w=$2
	mkdir -p "$out" "$w"
	printf 'IMAPAccount src\nHost localhost\nPort %s\nUser alice\nPass pw-alice\nSSLType IMAPS\nCertificateFile %s/cert.pem\n\nIMAPStore far\nAccount src\n\nMaildirStore near\nPath %s/\nInbox %s/INBOX\nSubFolders Verbatim\n\nChannel c\nFar :far:\nNear :near:\nPatterns *\nCreate Near\nSync Pull\nSyncState *\n' \
		"$IMAPS_PORT" "$D" "$out" "$out" >"$w/mbsyncrc"
	PEER_CMD=(mbsync -q -c "$w/mbsyncrc" -a)
}

# peer_mbsync_i2i CONF_DIR: IMAP alice -> IMAP bob. The caller resets bob first.
peer_mbsync_i2i() {
	local w=$1
	mkdir -p "$w"
	printf 'IMAPAccount src\nHost localhost\nPort %s\nUser alice\nPass pw-alice\nSSLType IMAPS\nCertificateFile %s/cert.pem\n\nIMAPAccount dst\nHost localhost\nPort %s\nUser bob\nPass pw-bob\nSSLType IMAPS\nCertificateFile %s/cert.pem\n\nIMAPStore s\nAccount src\n\nIMAPStore d\nAccount dst\n\nChannel c\nFar :s:\nNear :d:\nPatterns *\nCreate Near\nSync Pull\nSyncState %s/\n' \
		"$IMAPS_PORT" "$D" "$IMAPS_PORT" "$D" "$w" >"$w/mbsyncrc"
	PEER_CMD=(mbsync -q -c "$w/mbsyncrc" -a)
}

# peer_getmail OUT CONF_DIR [TIMEOUT]: POP3 alice's INBOX -> Maildir OUT, leaving mail on the
# server. getmail refuses to deliver as root, hence runuser and the chown.
#
# TIMEOUT (seconds) is the one option set beyond the measurements' config. getmail 6.18 forks a child per
# Maildir delivery and installs its SIGCHLD handler only after fork() returned
# (baseclasses.py, ForkingBase.forkchild/_prepare_child): when the child exits first, the
# wake-up is lost and getmail waits for socket.getdefaulttimeout(), i.e. this timeout (default
# 180 s), then aborts with "waiting child pid N timed out". On a busy machine that happens
# every few hundred messages, so bench.sh sets a short timeout and retries.
peer_getmail() {
	local out=$1 w=$2 timeout=${3:-180}
	mkdir -p "$out"/{cur,new,tmp} "$w/gm"
	printf '[retriever]\ntype = SimplePOP3SSLRetriever\nserver = localhost\nport = %s\nusername = alice\npassword = pw-alice\nca_certs = %s/cert.pem\ntimeout = %s\n\n[destination]\ntype = Maildir\npath = %s/\n\n[options]\nread_all = true\ndelete = false\nverbose = 0\n' \
		"$POP3S_PORT" "$D" "$timeout" "$out" >"$w/gm/getmailrc"
	chown -R vmail "$out" "$w"
	PEER_CMD=(runuser -u vmail -- getmail --getmaildir "$w/gm" --rcfile getmailrc -q)
}

# peer_dsync: Dovecot's own migration (doveadm backup through imapc, over plain IMAP on
# loopback, as in the measurements behind docs/performance.md), alice -> bob. The caller resets bob first.
peer_dsync() {
	PEER_CMD=(doveadm -c "$D/dovecot.conf" -o imapc_host=127.0.0.1 -o imapc_port="$IMAP_PORT"
		-o imapc_user=alice -o imapc_password=pw-alice
		-o "imapc_features=rfc822.size fetch-headers" -o mail_prefetch_count=20
		backup -R -u bob imapc:)
}

# peer_dsync_tls: the same, but imapc reads the source over implicit TLS (imaps, verifying
# cert.pem), as mailferry does: for information only (the official target stays dsync over plain
# IMAP). Dovecot 2.3 settings: imapc_ssl, ssl_client_ca_file.
peer_dsync_tls() {
	PEER_CMD=(doveadm -c "$D/dovecot.conf" -o imapc_host=localhost -o imapc_port="$IMAPS_PORT"
		-o imapc_ssl=imaps -o ssl_client_ca_file="$D/cert.pem"
		-o imapc_user=alice -o imapc_password=pw-alice
		-o "imapc_features=rfc822.size fetch-headers" -o mail_prefetch_count=20
		backup -R -u bob imapc:)
}

# reset_bob TRASH: empties bob's mailbox between IMAP -> IMAP runs. Deleting the
# Maildir would do; moving it aside is as good for the server and keeps thousands of unlinks (slow
# right before a timed run on this file system) out of the timed window.
reset_bob() {
	local _
	doveadm -c "$D/dovecot.conf" kick bob >/dev/null 2>&1 || true
	# kick only signals: wait for bob's sessions to be gone before moving the Maildir away.
	for _ in $(seq 50); do
		doveadm -c "$D/dovecot.conf" who -1 bob 2>/dev/null | grep -q "^bob " || break
		sleep 0.1
	done
	if [ -d "$D/home/bob/Maildir" ]; then
		mkdir -p "$1"
		mv "$D/home/bob/Maildir" "$1/bob-$(date +%s%N)"
	fi
}

# peer_mbsync_user USER OUT CONF_DIR [FSYNC]: peer_mbsync from USER's account (the nightly
# scenarios). FSYNC=no turns off mbsync's fsync (its global FSync option): for the untimed copy
# that only prepares the state its reruns are timed with.
peer_mbsync_user() {
	local u=$1 out=$2 w=$3
	mkdir -p "$out" "$w"
	printf 'FSync %s\n\n' "${4:-yes}" >"$w/mbsyncrc"
	printf 'IMAPAccount src\nHost localhost\nPort %s\nUser %s\nPass pw-%s\nSSLType IMAPS\nCertificateFile %s/cert.pem\n\nIMAPStore far\nAccount src\n\nMaildirStore near\nPath %s/\nInbox %s/INBOX\nSubFolders Verbatim\n\nChannel c\nFar :far:\nNear :near:\nPatterns *\nCreate Near\nSync Pull\nSyncState *\n' \
		"$IMAPS_PORT" "$u" "$u" "$D" "$out" "$out" >>"$w/mbsyncrc"
	PEER_CMD=(mbsync -q -c "$w/mbsyncrc" -a)
}

# peer_mbsync_sync USER MAILDIR CONF_DIR: two-way, IMAP USER <-> Maildir, as its manual's
# full-sync example: Sync All, Create Both, Expunge Both (fsync on, its default).
peer_mbsync_sync() {
	local u=$1 out=$2 w=$3
	mkdir -p "$out" "$w"
	printf 'IMAPAccount a\nHost localhost\nPort %s\nUser %s\nPass pw-%s\nSSLType IMAPS\nCertificateFile %s/cert.pem\n\nIMAPStore far\nAccount a\n\nMaildirStore near\nPath %s/\nInbox %s/INBOX\nSubFolders Verbatim\n\nChannel c\nFar :far:\nNear :near:\nPatterns *\nCreate Both\nExpunge Both\nSync All\nSyncState *\n' \
		"$IMAPS_PORT" "$u" "$u" "$D" "$out" "$out" >"$w/mbsyncrc"
	PEER_CMD=(mbsync -q -c "$w/mbsyncrc" -a)
}

# peer_mbsync_sync_i2i USER_A USER_B CONF_DIR: two-way between two IMAP stores (state files in
# CONF_DIR), Sync All, Create Both, Expunge Both.
peer_mbsync_sync_i2i() {
	local a=$1 b=$2 w=$3
	mkdir -p "$w"
	printf 'IMAPAccount a\nHost localhost\nPort %s\nUser %s\nPass pw-%s\nSSLType IMAPS\nCertificateFile %s/cert.pem\n\nIMAPAccount b\nHost localhost\nPort %s\nUser %s\nPass pw-%s\nSSLType IMAPS\nCertificateFile %s/cert.pem\n\nIMAPStore sa\nAccount a\n\nIMAPStore sb\nAccount b\n\nChannel c\nFar :sa:\nNear :sb:\nPatterns *\nCreate Both\nExpunge Both\nSync All\nSyncState %s/\n' \
		"$IMAPS_PORT" "$a" "$a" "$D" "$IMAPS_PORT" "$b" "$b" "$D" "$w" >"$w/mbsyncrc"
	PEER_CMD=(mbsync -q -c "$w/mbsyncrc" -a)
}

# peer_offlineimap USER MAILDIR CONF_DIR: OfflineIMAP (offlineimap3) IMAP USER <-> Maildir,
# one-shot, its defaults otherwise (two-way, deletions both ways, fsync on, one connection).
peer_offlineimap() {
	local u=$1 out=$2 w=$3
	mkdir -p "$out" "$w"
	printf '[general]\naccounts = a\nmetadata = %s/meta\nui = quiet\n\n[Account a]\nlocalrepository = local\nremoterepository = remote\n\n[Repository local]\ntype = Maildir\nlocalfolders = %s\n\n[Repository remote]\ntype = IMAP\nremotehost = localhost\nremoteport = %s\nssl = yes\nsslcacertfile = %s/cert.pem\nremoteuser = %s\nremotepass = pw-%s\n' \
		"$w" "$out" "$IMAPS_PORT" "$D" "$u" "$u" >"$w/offlineimaprc"
	PEER_CMD=(offlineimap -c "$w/offlineimaprc" -o -u quiet)
}
