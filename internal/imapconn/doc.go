// Package imapconn is the one IMAP connection stack of the program, shared
// by the IMAP source (sources/imap) and the IMAP sink (sinks/imapsink), the
// way go-imap v2 shares its wire package between client and server:
//
//   - the account and its URL (Config, ParseURL);
//   - the transport: TCP, implicit TLS or STARTTLS with its refusals
//     (startTLS), inactivity deadlines instead of absolute ones (Conn);
//   - the response guard: caps on lines, literals and status floods, and
//     a minimum rate once a response has begun (respGuard);
//   - --trace with credentials masked (tracer);
//   - login, one policy and one path for both kinds of connection
//     (loginPolicy, authenticate), with a password or an OAuth2 token;
//   - wire helpers for connections driven by hand (EncodeMUTF7, Quote,
//     ReadResponse, ParseResponse, AppendUIDs), message IDs (MakeID,
//     ParseID) and special-use roles (SpecialUse).
//
// Dial returns an imapclient.Client, used wherever the library does the
// job. DialRaw returns a logged-in connection driven by hand, the one raw
// path for what imapclient cannot send: MULTIAPPEND (the sink), X-GM-MSGID
// (the source's Gmail preset), the incremental listing (Session: STATUS of
// many mailboxes in one round trip, EXAMINE with QRESYNC, CHANGEDSINCE,
// VANISHED; delta.go says why it cannot be imapclient yet), and next
// OBJECTID.
// Both are dialled, secured, guarded and logged in by the same code, so
// they fail, time out and report alike.
package imapconn
