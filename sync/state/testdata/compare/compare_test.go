// Package statecompare measures the two embedded databases the state
// could have used, bbolt and SQLite (modernc.org/sqlite, pure Go), on the
// workload sync/state's own benchmarks measure (docs/state-format.md). It
// is its own module so that neither database enters mailferry's go.mod:
//
//	cd sync/state/testdata/compare && go test -run '^$' -bench . -benchtime 5x
package statecompare

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	bolt "go.etcd.io/bbolt"
	_ "modernc.org/sqlite"
)

const (
	folders = 10
	per     = 20_000
)

type summary struct {
	UIDValidity, UIDNext, Messages uint32
	HighestModSeq                  uint64
	Complete                       int64
	SinceFull, Len                 int
}

// record is one message as sync/state's log line holds it (tab-separated).
func record(folder, i int) (key, val string) {
	key = fmt.Sprintf("1700000000.%d", i+1)
	val = strings.Join([]string{key, fmt.Sprintf("1700000000.M%dP%d.host.example.org,U=%d,MF=%016x:2,S", i, folder, i, i),
		`=\Seen`, fmt.Sprint(4000 + i), fmt.Sprint(1700000000 + i), fmt.Sprintf("%016x", i*7919),
		fmt.Sprintf("%064x", i*104729), "1800000000"}, "\t")
	return key, val
}

type msg struct {
	dst, flags, msgid, sha string
	size, date, stored     int64
}

func decode(val string) (string, msg) {
	f := strings.Split(val, "\t")
	var m msg
	m.dst, m.flags, m.msgid, m.sha = f[1], f[2], f[5], f[6]
	m.size, _ = strconv.ParseInt(f[3], 10, 64)
	m.date, _ = strconv.ParseInt(f[4], 10, 64)
	m.stored, _ = strconv.ParseInt(f[7], 10, 64)
	return f[0], m
}

var (
	once sync.Once
	dir  string
	ferr error
)

func TestMain(m *testing.M) {
	if mode := os.Getenv("STATECOMPARE_RSS"); mode != "" {
		os.Exit(rssChild(mode, os.Getenv("STATECOMPARE_DIR")))
	}
	code := m.Run()
	if dir != "" {
		os.RemoveAll(dir)
	}
	os.Exit(code)
}

func fixture(b *testing.B) string {
	once.Do(func() {
		if dir, ferr = os.MkdirTemp("", "statecompare-"); ferr != nil {
			return
		}
		if ferr = fillBolt(filepath.Join(dir, "bolt.db")); ferr == nil {
			ferr = fillSQLite(filepath.Join(dir, "sqlite.db"))
		}
	})
	if ferr != nil {
		b.Fatal(ferr)
	}
	return dir
}

func fillBolt(path string) error {
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		return err
	}
	defer db.Close()
	for fo := range folders {
		err := db.Update(func(tx *bolt.Tx) error {
			sb, err := tx.CreateBucketIfNotExists([]byte("summary"))
			if err != nil {
				return err
			}
			name := fmt.Sprintf("folder%02d", fo)
			mb, err := tx.CreateBucket([]byte(name))
			if err != nil {
				return err
			}
			for i := range per {
				k, v := record(fo, i)
				if err := mb.Put([]byte(k), []byte(v)); err != nil {
					return err
				}
			}
			js, _ := json.Marshal(summary{UIDValidity: 1, UIDNext: per + 1, Messages: per, Complete: 1, Len: per})
			return sb.Put([]byte(name), js)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func openSQLite(path string) (*sql.DB, error) {
	// WAL with synchronous=FULL: a commit is durable when it returns.
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=busy_timeout(0)")
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	_, err = db.Exec(`CREATE TABLE IF NOT EXISTS folders(name TEXT PRIMARY KEY, summary TEXT) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS messages(folder TEXT, src TEXT, rec TEXT, PRIMARY KEY(folder, src)) WITHOUT ROWID;`)
	return db, err
}

func fillSQLite(path string) error {
	db, err := openSQLite(path)
	if err != nil {
		return err
	}
	defer db.Close()
	for fo := range folders {
		name := fmt.Sprintf("folder%02d", fo)
		tx, err := db.Begin()
		if err != nil {
			return err
		}
		for i := range per {
			k, v := record(fo, i)
			if _, err := tx.Exec(`INSERT INTO messages VALUES(?,?,?)`, name, k, v); err != nil {
				return err
			}
		}
		js, _ := json.Marshal(summary{UIDValidity: 1, UIDNext: per + 1, Messages: per, Complete: 1, Len: per})
		if _, err := tx.Exec(`INSERT INTO folders VALUES(?,?)`, name, string(js)); err != nil {
			return err
		}
		if err := tx.Commit(); err != nil {
			return err
		}
	}
	_, err = db.Exec(`PRAGMA wal_checkpoint(TRUNCATE)`)
	return err
}

func boltSummaries(path string) error {
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		return err
	}
	defer db.Close()
	return db.View(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("summary")).ForEach(func(k, v []byte) error {
			var s summary
			return json.Unmarshal(v, &s)
		})
	})
}

// kept holds what the loaders read, as sync/state's benchmark keeps its
// folders loaded.
var kept []map[string]msg

func boltLoad(path string, names ...string) (int, error) {
	kept = nil
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		return 0, err
	}
	defer db.Close()
	n := 0
	err = db.View(func(tx *bolt.Tx) error {
		for _, name := range names {
			recs := map[string]msg{}
			tx.Bucket([]byte(name)).ForEach(func(k, v []byte) error {
				src, m := decode(string(v))
				recs[src] = m
				return nil
			})
			n += len(recs)
			kept = append(kept, recs) // held, as a run holds the folders it works on
		}
		return nil
	})
	return n, err
}

func sqliteSummaries(path string) error {
	db, err := openSQLite(path)
	if err != nil {
		return err
	}
	defer db.Close()
	rows, err := db.Query(`SELECT name, summary FROM folders`)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var name, js string
		var s summary
		if err := rows.Scan(&name, &js); err != nil {
			return err
		}
		json.Unmarshal([]byte(js), &s)
	}
	return rows.Err()
}

func sqliteLoad(path string, names ...string) (int, error) {
	kept = nil
	db, err := openSQLite(path)
	if err != nil {
		return 0, err
	}
	defer db.Close()
	n := 0
	for _, name := range names {
		recs := map[string]msg{}
		rows, err := db.Query(`SELECT rec FROM messages WHERE folder = ?`, name)
		if err != nil {
			return 0, err
		}
		for rows.Next() {
			var v string
			if err := rows.Scan(&v); err != nil {
				return 0, err
			}
			src, m := decode(v)
			recs[src] = m
		}
		rows.Close()
		n += len(recs)
		kept = append(kept, recs) // held, as a run holds the folders it works on
	}
	return n, nil
}

func allNames() []string {
	var out []string
	for fo := range folders {
		out = append(out, fmt.Sprintf("folder%02d", fo))
	}
	return out
}

func BenchmarkOpenSummaries(b *testing.B) {
	d := fixture(b)
	b.Run("bbolt", func(b *testing.B) {
		for b.Loop() {
			if err := boltSummaries(filepath.Join(d, "bolt.db")); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("sqlite", func(b *testing.B) {
		for b.Loop() {
			if err := sqliteSummaries(filepath.Join(d, "sqlite.db")); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkLoadFolder(b *testing.B) {
	d := fixture(b)
	for _, c := range []struct {
		name string
		load func(string, ...string) (int, error)
		file string
	}{{"bbolt", boltLoad, "bolt.db"}, {"sqlite", sqliteLoad, "sqlite.db"}} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				if n, err := c.load(filepath.Join(d, c.file), "folder03"); err != nil || n != per {
					b.Fatal(n, err)
				}
			}
		})
		b.Run(c.name+"/all", func(b *testing.B) {
			for b.Loop() {
				if n, err := c.load(filepath.Join(d, c.file), allNames()...); err != nil || n != per*folders {
					b.Fatal(n, err)
				}
			}
		})
	}
}

// BenchmarkAppend5000: 5,000 records into a new store, one durable
// transaction per 100 (the engine's flush rule).
func BenchmarkAppend5000(b *testing.B) {
	b.Run("bbolt", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			path := filepath.Join(b.TempDir(), "bolt.db")
			b.StartTimer()
			db, err := bolt.Open(path, 0o600, nil)
			if err != nil {
				b.Fatal(err)
			}
			for batch := range 50 {
				err := db.Update(func(tx *bolt.Tx) error {
					mb, err := tx.CreateBucketIfNotExists([]byte("INBOX"))
					for i := batch * 100; err == nil && i < batch*100+100; i++ {
						k, v := record(0, i)
						err = mb.Put([]byte(k), []byte(v))
					}
					return err
				})
				if err != nil {
					b.Fatal(err)
				}
			}
			db.Close()
		}
	})
	b.Run("sqlite", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			path := filepath.Join(b.TempDir(), "sqlite.db")
			b.StartTimer()
			db, err := openSQLite(path)
			if err != nil {
				b.Fatal(err)
			}
			for batch := range 50 {
				tx, _ := db.Begin()
				for i := batch * 100; i < batch*100+100; i++ {
					k, v := record(0, i)
					if _, err := tx.Exec(`INSERT OR REPLACE INTO messages VALUES(?,?,?)`, "INBOX", k, v); err != nil {
						b.Fatal(err)
					}
				}
				if err := tx.Commit(); err != nil {
					b.Fatal(err)
				}
			}
			db.Close()
		}
	})
}

func BenchmarkPeakRSS(b *testing.B) {
	d := fixture(b)
	for _, mode := range []string{"bbolt-summaries", "bbolt-all", "sqlite-summaries", "sqlite-all", "idle"} {
		b.Run(mode, func(b *testing.B) {
			var kib int64
			for b.Loop() {
				cmd := exec.Command(os.Args[0], "-test.run=^$")
				cmd.Env = append(os.Environ(), "STATECOMPARE_RSS="+mode, "STATECOMPARE_DIR="+d)
				out, err := cmd.Output()
				if err != nil {
					b.Fatalf("child %s: %v", mode, err)
				}
				fmt.Sscan(string(out), &kib)
			}
			b.ReportMetric(float64(kib)/1024, "peak-RSS-MiB")
		})
	}
}

// rssChild does one thing and prints its VmHWM in KiB.
func rssChild(mode, d string) int {
	var err error
	switch mode {
	case "bbolt-summaries":
		err = boltSummaries(filepath.Join(d, "bolt.db"))
	case "bbolt-all":
		_, err = boltLoad(filepath.Join(d, "bolt.db"), allNames()...)
	case "sqlite-summaries":
		err = sqliteSummaries(filepath.Join(d, "sqlite.db"))
	case "sqlite-all":
		_, err = sqliteLoad(filepath.Join(d, "sqlite.db"), allNames()...)
	}
	status, rerr := os.ReadFile("/proc/self/status")
	if err != nil || rerr != nil {
		fmt.Fprintln(os.Stderr, err, rerr)
		return 1
	}
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			fmt.Println(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			return 0
		}
	}
	return 1
}
