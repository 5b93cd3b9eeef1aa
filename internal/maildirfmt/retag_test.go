package maildirfmt

import "testing"

func TestRetag(t *testing.T) {
	kw := Keywords{"$Label1", "", "NonJunk"}
	for _, c := range []struct {
		name    string
		rel     string
		letters string
		want    string
	}{
		{"new/ without flags stays", "new/1.M2.h,S=3", "", "new/1.M2.h,S=3"},
		{"new/ to cur/ when seen", "new/1.M2.h,S=3", "S", "cur/1.M2.h,S=3:2,S"},
		{"new/ to cur/ for a keyword alone", "new/1.M2.h,S=3", "a", "cur/1.M2.h,S=3:2,a"},
		{"same flags: same name", "cur/1.M2.h,S=3:2,FS", "FS", "cur/1.M2.h,S=3:2,FS"},
		{"flag added, sorted", "cur/1.M2.h,S=3:2,S", "FS", "cur/1.M2.h,S=3:2,FS"},
		{"all cleared: stays in cur/", "cur/1.M2.h,S=3:2,FRS", "", "cur/1.M2.h,S=3:2,"},
		{"known keyword letters replaced", "cur/1.M2.h,S=3:2,Sac", "Sc", "cur/1.M2.h,S=3:2,Sc"},
		{"unknown letters kept", "cur/1.M2.h,S=3:2,SXbz", "F", "cur/1.M2.h,S=3:2,FXbz"},
		{"no info in cur/ gets one", "cur/1.M2.h,S=3", "S", "cur/1.M2.h,S=3:2,S"},
		{"experimental info replaced", "cur/1.M2.h,S=3:1,xyz", "S", "cur/1.M2.h,S=3:2,S"},
		{"Dovecot's W= field stays in the ID", "cur/1.M2.h,S=3,W=4:2,S", "FS", "cur/1.M2.h,S=3,W=4:2,FS"},
	} {
		got := Retag(c.rel, c.letters, kw)
		if got.Old != c.rel || got.New != c.want {
			t.Errorf("%s: Retag(%q, %q) = %+v, want New %q", c.name, c.rel, c.letters, got, c.want)
		}
		if got.Same() != (c.rel == c.want) {
			t.Errorf("%s: Same() = %v", c.name, got.Same())
		}
	}
}
