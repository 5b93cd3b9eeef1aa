// Command writefloor is the durable-write floor of mailferry's Maildir benchmarks: the
// same number of files with the same sizes, in the same folders, made durable by the same
// rule as mailferry's Maildir sink (sinks/maildir), with no network and no parsing:
//
//   - each message is created in its folder's tmp/ (O_CREAT|O_EXCL, 0600) and written;
//   - every -batch messages (the engine's commit batch, 64) its files get their mtime
//     (futimens) and are closed, one syncfs(2) of the file system makes them durable, each
//     is renamed (renameat2 RENAME_NOREPLACE) into new/, or cur/ when it has flags, and each
//     touched directory is fsynced once;
//   - with -overlap (the default, as mailferry's engine does) the next batch is written while
//     the previous one commits; -overlap=false writes and commits one after the other.
//
// The message sizes and folders come from a manifest that -scan writes from a Maildir++
// tree (bench.sh scans the corpus once, untimed):
//
//	writefloor -scan MAILDIR [-inbox-only] > manifest     # lines: folder TAB size TAB cur|new
//	writefloor -manifest manifest -out DIR
//
// It prints "N files, B bytes in S s" (its own clock) on stdout and, on stderr, where the
// time went (create, write, commit phases), which says what a create costs on this disk
// with and without a concurrent syncfs.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

func main() {
	scan := flag.String("scan", "", "write the manifest of the Maildir++ tree `DIR` to stdout and exit")
	inboxOnly := flag.Bool("inbox-only", false, "with -scan: only the INBOX (a POP3 maildrop); every message goes to new/")
	manifest := flag.String("manifest", "", "the manifest `FILE` to write")
	out := flag.String("out", "", "the Maildir++ root `DIR` to write into (created; must not exist)")
	batch := flag.Int("batch", 64, "messages per commit")
	overlap := flag.Bool("overlap", true, "write the next batch while the previous one commits")
	flag.Parse()
	var err error
	switch {
	case *scan != "":
		err = scanTree(*scan, *inboxOnly)
	case *manifest != "" && *out != "":
		err = run(*manifest, *out, *batch, *overlap)
	default:
		err = errors.New("want -scan DIR, or -manifest FILE -out DIR")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "writefloor:", err)
		os.Exit(1)
	}
}

// msg is one manifest line: a message of size bytes for folder ("" is the INBOX, else a
// Maildir++ ".Name") that goes to sub ("cur" or "new").
type msg struct {
	folder string
	size   int64
	sub    string
}

// scanTree prints the manifest of the Maildir++ tree root: one line per file in a cur/ or
// new/ of the root or of a ".Folder" under it. A file whose name has flags after ":2,"
// goes to cur/, as mailferry stores a message with flags.
func scanTree(root string, inboxOnly bool) error {
	folders := []string{""}
	if !inboxOnly {
		ents, err := os.ReadDir(root)
		if err != nil {
			return err
		}
		for _, e := range ents {
			if e.IsDir() && strings.HasPrefix(e.Name(), ".") {
				folders = append(folders, e.Name())
			}
		}
	}
	w := bufio.NewWriter(os.Stdout)
	for _, f := range folders {
		for _, sub := range []string{"cur", "new"} {
			if err := scanDir(w, f, filepath.Join(root, f, sub), inboxOnly); err != nil {
				return err
			}
		}
	}
	return w.Flush()
}

func scanDir(w *bufio.Writer, folder, dir string, inboxOnly bool) error {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	sort.Slice(ents, func(i, j int) bool { return ents[i].Name() < ents[j].Name() })
	for _, e := range ents {
		fi, err := e.Info()
		if err != nil {
			return err
		}
		sub := "new"
		if _, flags, ok := strings.Cut(e.Name(), ":2,"); ok && flags != "" && !inboxOnly {
			sub = "cur"
		}
		fmt.Fprintf(w, "%s\t%d\t%s\n", folder, fi.Size(), sub)
	}
	return nil
}

func readManifest(path string) ([]msg, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []msg
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.Split(sc.Text(), "\t")
		if len(parts) != 3 {
			return nil, fmt.Errorf("%s: bad line %q", path, sc.Text())
		}
		n, err := strconv.ParseInt(parts[1], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		out = append(out, msg{folder: parts[0], size: n, sub: parts[2]})
	}
	return out, sc.Err()
}

// written is a message in tmp/, waiting for its batch's commit.
type written struct {
	f     *os.File
	tmp   string
	final string
	dir   string // its final directory, fsynced after the renames
}

// clock sums the time spent in each phase (the commit runs on its own goroutine).
type clock struct {
	mu                      sync.Mutex
	create, write, commit   time.Duration
	syncfs, rename, dirsync time.Duration
	creates                 int
	slowCreates             int // creates over 0.5 ms
}

func (c *clock) add(d *time.Duration, since time.Time) {
	c.mu.Lock()
	*d += time.Since(since)
	c.mu.Unlock()
}

type writer struct {
	out   string
	host  string
	seq   int
	buf   []byte
	root  *os.File
	clk   clock
	mtime time.Time
}

func run(manifest, out string, batch int, overlap bool) error {
	msgs, err := readManifest(manifest)
	if err != nil {
		return err
	}
	var max int64
	for _, m := range msgs {
		max = maxInt(max, m.size)
	}
	w := &writer{out: out, buf: make([]byte, max), mtime: time.Unix(1_700_000_000, 0)}
	for i := range w.buf {
		w.buf[i] = byte('a' + i%26)
	}
	w.host, _ = os.Hostname()
	start := time.Now()
	if err := w.makeFolders(msgs); err != nil {
		return err
	}
	defer w.root.Close()
	var total int64
	for _, m := range msgs {
		total += m.size
	}
	if overlap {
		err = w.overlapped(msgs, batch)
	} else {
		err = w.serial(msgs, batch)
	}
	if err != nil {
		return err
	}
	elapsed := time.Since(start)
	fmt.Printf("%d files, %d bytes in %.3f s\n", len(msgs), total, elapsed.Seconds())
	c := &w.clk
	fmt.Fprintf(os.Stderr, "writefloor: overlap=%v: create %.3f s (%.3f ms each, %d over 0.5 ms), write %.3f s, commit %.3f s (syncfs %.3f, rename %.3f, dir fsync %.3f)\n",
		overlap, c.create.Seconds(), c.create.Seconds()*1000/float64(maxInt(1, c.creates)), c.slowCreates,
		c.write.Seconds(), c.commit.Seconds(), c.syncfs.Seconds(), c.rename.Seconds(), c.dirsync.Seconds())
	return nil
}

func maxInt[T int | int64](a, b T) T {
	if a > b {
		return a
	}
	return b
}

// makeFolders creates out and every folder's cur/, new/ and tmp/, and makes them durable
// (mailferry's sink does the same when it first meets a folder).
func (w *writer) makeFolders(msgs []msg) error {
	if err := os.Mkdir(w.out, 0o700); err != nil {
		return err
	}
	seen := map[string]bool{}
	dirs := []string{filepath.Dir(w.out), w.out}
	for _, m := range msgs {
		if seen[m.folder] {
			continue
		}
		seen[m.folder] = true
		d := filepath.Join(w.out, m.folder)
		if m.folder != "" {
			if err := os.Mkdir(d, 0o700); err != nil {
				return err
			}
		}
		for _, sub := range []string{"cur", "new", "tmp"} {
			if err := os.Mkdir(filepath.Join(d, sub), 0o700); err != nil {
				return err
			}
			dirs = append(dirs, filepath.Join(d, sub))
		}
		dirs = append(dirs, d)
	}
	for _, d := range dirs {
		if err := syncDir(d); err != nil {
			return err
		}
	}
	var err error
	w.root, err = os.OpenFile(w.out, os.O_RDONLY|unix.O_DIRECTORY, 0)
	return err
}

// put creates m in its folder's tmp/ and writes it, as the sink's Put does.
func (w *writer) put(m msg) (written, error) {
	w.seq++
	dir := filepath.Join(w.out, m.folder)
	tmp := filepath.Join(dir, "tmp", fmt.Sprintf("floor.%d.mailferry-tmp", w.seq))
	t := time.Now()
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_CLOEXEC, 0o600)
	d := time.Since(t)
	w.clk.mu.Lock()
	w.clk.create += d
	w.clk.creates++
	if d > 500*time.Microsecond {
		w.clk.slowCreates++
	}
	w.clk.mu.Unlock()
	if err != nil {
		return written{}, err
	}
	t = time.Now()
	if _, err := f.Write(w.buf[:m.size]); err != nil {
		f.Close()
		return written{}, err
	}
	w.clk.add(&w.clk.write, t)
	// A name as long as mailferry's: time, pid, sequence, random part, host, key and size.
	name := fmt.Sprintf("%d.M%dP%dQ%dR%08x.%s,MF=%064x,S=%d", t.Unix(), t.Nanosecond()/1000, os.Getpid(), w.seq, w.seq*2654435761, w.host, w.seq, m.size)
	if m.sub == "cur" {
		name += ":2,S"
	}
	sub := filepath.Join(dir, m.sub)
	return written{f: f, tmp: tmp, final: filepath.Join(sub, name), dir: sub}, nil
}

// commit makes a batch durable and visible: futimens and close each file, one syncfs,
// the renames, then one fsync per touched directory (in parallel, 4 at a time, as the
// sink does).
func (w *writer) commit(b []written) error {
	t0 := time.Now()
	defer w.clk.add(&w.clk.commit, t0)
	ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, unix.NsecToTimespec(w.mtime.UnixNano())}
	for _, x := range b {
		// futimens(fd): utimensat with a NULL path, as the sink's setMtimeFD.
		if _, _, e := unix.Syscall6(unix.SYS_UTIMENSAT, x.f.Fd(), 0, uintptr(unsafe.Pointer(&ts[0])), 0, 0, 0); e != 0 {
			return fmt.Errorf("futimens %s: %w", x.tmp, e)
		}
		if err := x.f.Close(); err != nil {
			return err
		}
	}
	t := time.Now()
	if err := unix.Syncfs(int(w.root.Fd())); err != nil {
		return fmt.Errorf("syncfs: %w", err)
	}
	w.clk.add(&w.clk.syncfs, t)
	t = time.Now()
	dirs := map[string]bool{}
	for _, x := range b {
		if err := unix.Renameat2(unix.AT_FDCWD, x.tmp, unix.AT_FDCWD, x.final, unix.RENAME_NOREPLACE); err != nil {
			return fmt.Errorf("rename %s: %w", x.tmp, err)
		}
		dirs[x.dir] = true
	}
	w.clk.add(&w.clk.rename, t)
	t = time.Now()
	defer w.clk.add(&w.clk.dirsync, t)
	return syncDirs(dirs)
}

func syncDirs(dirs map[string]bool) error {
	list := make([]string, 0, len(dirs))
	for d := range dirs {
		list = append(list, d)
	}
	errs := make([]error, len(list))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	for i, d := range list {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			errs[i] = syncDir(d)
			<-sem
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func syncDir(d string) error {
	f, err := os.Open(d)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func (w *writer) serial(msgs []msg, batch int) error {
	var b []written
	for i, m := range msgs {
		x, err := w.put(m)
		if err != nil {
			return err
		}
		b = append(b, x)
		if len(b) == batch || i == len(msgs)-1 {
			if err := w.commit(b); err != nil {
				return err
			}
			b = nil
		}
	}
	return nil
}

// overlapped writes batch n+1 while a second goroutine commits batch n: the shape of
// mailferry's engine (workers Put while the committer commits).
func (w *writer) overlapped(msgs []msg, batch int) error {
	batches := make(chan []written, 1)
	done := make(chan error, 1)
	go func() {
		var err error
		for b := range batches {
			if err == nil {
				err = w.commit(b)
			}
		}
		done <- err
	}()
	var b []written
	var err error
	for i, m := range msgs {
		var x written
		if x, err = w.put(m); err != nil {
			break
		}
		b = append(b, x)
		if len(b) == batch || i == len(msgs)-1 {
			batches <- b
			b = nil
		}
	}
	close(batches)
	return errors.Join(err, <-done)
}
