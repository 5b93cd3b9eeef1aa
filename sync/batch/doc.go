// Package batch migrates many accounts: an accounts CSV (one row per
// account, credentials only as references) becomes one River job per
// account and pass, in a SQLite database on one machine or PostgreSQL
// across many (the same code; only the database URL differs). Workers run
// each account through a Runner the command supplies (the copy engine),
// and map mailferry's exit codes to River's outcomes.
package batch
