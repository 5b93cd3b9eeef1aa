package maildirfmt

import (
	"reflect"
	"testing"
)

// TestByID: entries read from new/ then cur/ come out sorted by ID, one
// per ID, the cur/ one where both directories hold it, whichever order
// the directories gave them in.
func TestByID(t *testing.T) {
	for _, c := range []struct {
		name string
		in   []entry
		want []string
	}{
		{"sorted", []entry{{"b", "new/b"}, {"a", "cur/a:2,S"}}, []string{"cur/a:2,S", "new/b"}},
		{"cur/ wins", []entry{{"a", "new/a"}, {"b", "new/b"}, {"a", "cur/a:2,S"}}, []string{"cur/a:2,S", "new/b"}},
		{"cur/ wins read first", []entry{{"a", "cur/a:2,"}, {"a", "new/a"}}, []string{"cur/a:2,"}},
		{"two in cur/: the greater name", []entry{{"a", "cur/a:2,S"}, {"a", "cur/a:2,F"}}, []string{"cur/a:2,S"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var got []string
			for _, e := range byID(c.in) {
				got = append(got, e.path)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("byID = %q, want %q", got, c.want)
			}
		})
	}
}
