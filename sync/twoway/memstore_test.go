package twoway

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mailferry/mailferry/sync/mail"
)

// memStore is an in-memory store for the applier's tests: one object is
// both the Source and the Sink (with FlagSetter and Remover) over the same
// messages and ids, as an IMAP account is. Put is not idempotent (no
// Envelope.Key dedupe), the hardest case for a rerun after a kill.
type memStore struct {
	mu      sync.Mutex
	prefix  string
	next    int
	folders map[string]map[mail.ID]*memMsg
	// noMsgID: List gives no Message-ID (as a Maildir), so the run reads
	// the header of new messages.
	noMsgID bool
	// failList makes List of that folder fail after listing half of it.
	failList string
	nOpens   int
}

func (s *memStore) opens() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nOpens
}

type memMsg struct {
	body  []byte
	flags []mail.Flag
	date  time.Time
}

var (
	_ mail.Source     = (*memStore)(nil)
	_ mail.Sink       = (*memStore)(nil)
	_ mail.FlagSetter = (*memStore)(nil)
	_ mail.Remover    = (*memStore)(nil)
)

func newMemStore(prefix string, folders ...string) *memStore {
	s := &memStore{prefix: prefix, folders: map[string]map[mail.ID]*memMsg{}}
	for _, f := range folders {
		s.folders[f] = map[mail.ID]*memMsg{}
	}
	return s
}

// tokenBody is the message of token tok: its Message-ID, size and date
// are the token's.
func tokenBody(tok int) []byte {
	return []byte(fmt.Sprintf("Message-ID: <%d@test>\r\nSubject: %d\r\n\r\nbody %d\r\n", tok, tok, tok))
}

func tokenDate(tok int) time.Time { return time.Unix(int64(1e9+tok*60), 0) }

// add stores token tok in folder as another client would; it returns the id.
func (s *memStore) add(folder string, tok int, flags ...mail.Flag) mail.ID {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addLocked(folder, &memMsg{body: tokenBody(tok), flags: flags, date: tokenDate(tok)})
}

func (s *memStore) addLocked(folder string, m *memMsg) mail.ID {
	s.next++
	id := mail.ID(s.prefix + strconv.Itoa(s.next))
	if s.folders[folder] == nil {
		s.folders[folder] = map[mail.ID]*memMsg{}
	}
	s.folders[folder][id] = m
	return id
}

// find returns the id of token tok in folder.
func (s *memStore) find(folder string, tok int) mail.ID {
	s.mu.Lock()
	defer s.mu.Unlock()
	want := tokenBody(tok)
	for id, m := range s.folders[folder] {
		if bytes.Equal(m.body, want) {
			return id
		}
	}
	panic(fmt.Sprintf("token %d not in %s", tok, folder))
}

// moveTo moves a message as another client would (a new id).
func (s *memStore) moveTo(folder string, id mail.ID, to string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.folders[folder][id]
	delete(s.folders[folder], id)
	s.addLocked(to, m)
}

// describe is the store's content: folder -> sorted "subject:flags".
func (s *memStore) describe() map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]string{}
	for name, msgs := range s.folders {
		var parts []string
		for _, m := range msgs {
			subj := strings.SplitN(strings.SplitN(string(m.body), "Subject: ", 2)[1], "\r\n", 2)[0]
			parts = append(parts, subj+":"+setOf(m.flags).String())
		}
		sort.Strings(parts)
		out[name] = strings.Join(parts, ",")
	}
	return out
}

func (s *memStore) Mailboxes(ctx context.Context) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for f := range s.folders {
		out = append(out, f)
	}
	sort.Strings(out)
	return out, nil
}

func (s *memStore) List(ctx context.Context, mailbox string, fn func(mail.Envelope) error) error {
	s.mu.Lock()
	msgs, ok := s.folders[mailbox]
	var envs []mail.Envelope
	for id, m := range msgs {
		env := mail.Envelope{Mailbox: mailbox, ID: id, Size: int64(len(m.body)), Date: m.date, Flags: append([]mail.Flag(nil), m.flags...)}
		if !s.noMsgID && bytes.HasPrefix(m.body, []byte("Message-ID: ")) {
			env.MessageID = strings.SplitN(strings.TrimPrefix(string(m.body), "Message-ID: "), "\r\n", 2)[0]
		}
		envs = append(envs, env)
	}
	fail := s.failList == mailbox
	s.mu.Unlock()
	if !ok {
		return mail.ErrMailboxNotFound
	}
	sort.Slice(envs, func(i, j int) bool { return envs[i].ID < envs[j].ID })
	for i, env := range envs {
		if fail && i >= len(envs)/2 {
			return mail.Temp(fmt.Errorf("mem: list %s: connection reset", mailbox))
		}
		if err := fn(env); err != nil {
			return err
		}
	}
	return nil
}

func (s *memStore) Open(ctx context.Context, env mail.Envelope) (io.ReadCloser, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nOpens++
	m := s.folders[env.Mailbox][env.ID]
	if m == nil {
		return nil, fmt.Errorf("mem: open %s %s: %w", env.Mailbox, env.ID, mail.ErrNotFound)
	}
	return io.NopCloser(bytes.NewReader(m.body)), nil
}

func (s *memStore) CreateMailbox(ctx context.Context, name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.folders[name] == nil {
		s.folders[name] = map[mail.ID]*memMsg{}
	}
	return nil
}

func (s *memStore) Put(ctx context.Context, env mail.Envelope, body io.Reader) (mail.ID, error) {
	b, err := io.ReadAll(body)
	if err != nil {
		return "", err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.folders[env.Mailbox] == nil {
		return "", mail.ErrMailboxNotFound
	}
	return s.addLocked(env.Mailbox, &memMsg{body: b, flags: append([]mail.Flag(nil), env.Flags...), date: env.Date}), nil
}

func (s *memStore) SetFlags(ctx context.Context, mailbox string, id mail.ID, flags []mail.Flag) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.folders[mailbox][id]
	if m == nil {
		return mail.ErrNotFound
	}
	m.flags = append([]mail.Flag(nil), flags...)
	return nil
}

func (s *memStore) setFlagsOf(folder string, tok int, flags ...mail.Flag) {
	if err := s.SetFlags(context.Background(), folder, s.find(folder, tok), flags); err != nil {
		panic(err)
	}
}

func (s *memStore) Remove(ctx context.Context, envs []mail.Envelope) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range envs {
		delete(s.folders[e.Mailbox], e.ID)
	}
	return nil
}

func (s *memStore) removeTok(folder string, tok int) {
	id := s.find(folder, tok)
	s.Remove(context.Background(), []mail.Envelope{{Mailbox: folder, ID: id}})
}

func (s *memStore) Limits() mail.Limits { return mail.Limits{} }
func (s *memStore) Close() error        { return nil }

// renumber gives every message of folder a new id with prefix (an IMAP
// UIDVALIDITY change when ids are "uidvalidity.uid").
func (s *memStore) renumber(folder, prefix string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.folders[folder]
	s.folders[folder] = map[mail.ID]*memMsg{}
	for _, m := range old {
		s.next++
		s.folders[folder][mail.ID(prefix+strconv.Itoa(s.next))] = m
	}
}

// clone returns a deep copy of the store (a kill test reruns from the same
// point several times).
func (s *memStore) clone() *memStore {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := &memStore{prefix: s.prefix, next: s.next, noMsgID: s.noMsgID, failList: s.failList, folders: map[string]map[mail.ID]*memMsg{}}
	for name, msgs := range s.folders {
		c.folders[name] = map[mail.ID]*memMsg{}
		for id, m := range msgs {
			cm := *m
			cm.flags = append([]mail.Flag(nil), m.flags...)
			c.folders[name][id] = &cm
		}
	}
	return c
}

// RenameMailbox implements mail.FolderManager: the folder keeps its ids,
// as an IMAP server keeping UIDVALIDITY across RENAME does.
func (s *memStore) RenameMailbox(ctx context.Context, from, to string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	msgs, ok := s.folders[from]
	switch {
	case !ok && s.folders[to] != nil:
		return nil // done before
	case !ok:
		return fmt.Errorf("mem: rename %s: %w", from, mail.ErrMailboxNotFound)
	case s.folders[to] != nil:
		return fmt.Errorf("mem: rename %s to %s: it exists", from, to)
	}
	s.folders[to] = msgs
	delete(s.folders, from)
	return nil
}

// DeleteMailbox implements mail.FolderManager: name goes only while it
// holds exactly holds.
func (s *memStore) DeleteMailbox(ctx context.Context, name string, holds []mail.ID) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	msgs, ok := s.folders[name]
	if !ok {
		return nil
	}
	if len(msgs) != len(holds) {
		return fmt.Errorf("mem: delete %s: it holds %d messages, not %d", name, len(msgs), len(holds))
	}
	for _, id := range holds {
		if msgs[id] == nil {
			return fmt.Errorf("mem: delete %s: %s is not there", name, id)
		}
	}
	delete(s.folders, name)
	return nil
}
