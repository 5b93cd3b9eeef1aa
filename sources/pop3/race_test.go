//go:build race

package pop3

// raceEnabled: the race detector changes allocation counts (crypto/tls
// allocates per record in race builds), so memory assertions that include
// the in-process server's TLS skip under it.
const raceEnabled = true
