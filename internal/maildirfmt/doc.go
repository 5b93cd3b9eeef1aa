// Package maildirfmt is the Maildir++ format that sources/maildir reads and
// sinks/maildir writes: the mapping between mailbox names and folder
// directories (FolderDir, MailboxName), the flags a file name's info holds
// (FlagLetters, and the dovecot-keywords letters read back), the maildir:
// URL, and Tree, which reads a tree without changing it. Both directions
// import it, so neither imports the other.
package maildirfmt
