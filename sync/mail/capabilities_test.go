package mail_test

import (
	"context"
	"io"
	"iter"
	"reflect"
	"testing"

	"github.com/mailferry/mailferry/sync/mail"
)

// plainSink is a sink with two capabilities.
type plainSink struct{ mail.Sink }

func (plainSink) Commit(context.Context) error { return nil }
func (plainSink) Index(context.Context, string, func(mail.Envelope) error) error {
	return nil
}

var (
	_ mail.Committer = plainSink{}
	_ mail.Indexer   = plainSink{}
)

// fullSource is a source with every source capability.
type fullSource struct{ mail.Source }

func (fullSource) OpenBatch(context.Context, []mail.Envelope, func(mail.Envelope, io.Reader) error) error {
	return nil
}
func (fullSource) Remove(context.Context, []mail.Envelope) error { return nil }
func (fullSource) DeleteAfterCopy()                              {}
func (fullSource) Unstored(func(mail.Envelope) bool) []mail.Envelope {
	return nil
}
func (fullSource) MessageIDs(context.Context, string, []mail.ID) (map[mail.ID]string, error) {
	return nil, nil
}
func (fullSource) Stat(context.Context, string) (int, int64, error)        { return 0, 0, nil }
func (fullSource) MailboxRoles(context.Context) (map[string]string, error) { return nil, nil }
func (fullSource) FolderStatuses(context.Context, []string) (map[string]mail.FolderStatus, error) {
	return nil, nil
}
func (fullSource) ListChanges(context.Context, string, mail.FolderStatus, iter.Seq[mail.ID], func(mail.Change) error) (mail.ChangeSummary, error) {
	return mail.ChangeSummary{}, nil
}

// forwarder forwards Remove and DeleteAfterCopy whatever its inner source
// has, the way the date filter does; without Features it would claim both.
type forwarder struct{ inner any }

func (forwarder) Remove(context.Context, []mail.Envelope) error { return nil }
func (forwarder) DeleteAfterCopy()                              {}
func (w forwarder) Features() *mail.Features                    { return mail.Wrap(w, w.inner) }

// hider passes everything through but hides Remover.
type hider struct{ inner any }

func (w hider) Features() *mail.Features {
	f := mail.Wrap(w, w.inner)
	f.Remover = nil
	return f
}

// nilFeaturer returns nil features.
type nilFeaturer struct{}

func (nilFeaturer) Features() *mail.Features { return nil }

func TestFeaturesOf(t *testing.T) {
	allSource := []string{mail.CapBatchOpener, mail.CapRemover, mail.CapDeleteAware, mail.CapUnstoredReporter, mail.CapHeaderFetcher, mail.CapStatter, mail.CapRoleLister, mail.CapFolderStatuser, mail.CapChangeLister}
	tests := []struct {
		name string
		v    any
		want []string
	}{
		{"nil", nil, nil},
		{"plain sink", plainSink{}, []string{mail.CapCommitter, mail.CapIndexer}},
		{"full source", fullSource{}, allSource},
		{"forwarder over bare source masks", forwarder{inner: struct{ mail.Source }{}}, nil},
		{"forwarder over full source passes through", forwarder{inner: fullSource{}}, allSource},
		{"forwarder over forwarder over full", forwarder{inner: forwarder{inner: fullSource{}}}, allSource},
		{"hider", hider{inner: fullSource{}}, []string{mail.CapBatchOpener, mail.CapDeleteAware, mail.CapUnstoredReporter, mail.CapHeaderFetcher, mail.CapStatter, mail.CapRoleLister, mail.CapFolderStatuser, mail.CapChangeLister}},
		{"featurer returning nil", nilFeaturer{}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := mail.FeaturesOf(tt.v)
			if got := f.Names(); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Names() = %v, want %v", got, tt.want)
			}
			for _, n := range tt.want {
				if !f.Has(n) {
					t.Errorf("Has(%q) = false", n)
				}
			}
		})
	}
}

// TestWrapKeepsOwnMethods checks that a capability the wrapper implements
// and the inner endpoint has is the wrapper's, and one it does not
// implement is the inner endpoint's.
func TestWrapKeepsOwnMethods(t *testing.T) {
	in := fullSource{}
	w := forwarder{inner: in}
	f := mail.FeaturesOf(w)
	tests := []struct {
		name string
		got  any
		want any
	}{
		{"Remover is the wrapper's", f.Remover, w},
		{"DeleteAware is the wrapper's", f.DeleteAware, w},
		{"BatchOpener is the inner's", f.BatchOpener, in},
		{"Statter is the inner's", f.Statter, in},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: got %T", tt.name, tt.got)
		}
	}
}

// TestFeaturesOfCopies checks that changing the result does not change
// what a Featurer returns next time.
func TestFeaturesOfCopies(t *testing.T) {
	w := forwarder{inner: fullSource{}}
	f := mail.FeaturesOf(w)
	f.Statter = nil
	if mail.FeaturesOf(w).Statter == nil {
		t.Fatal("FeaturesOf shares its result")
	}
}
