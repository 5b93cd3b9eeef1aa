package main

import "testing"

// The bench checks the floor's result (both sides in step); these pin the pieces that decide
// which UIDs and file names it writes, which a wrong count would not point at.
func TestUIDSet(t *testing.T) {
	for _, tc := range []struct {
		uids []uint32
		want string
		n    int
	}{
		{[]uint32{7}, "7", 1},
		{[]uint32{1, 2, 3, 5, 9, 10}, "1:3,5,9:10", 6},
		{[]uint32{4, 6, 8}, "4,6,8", 3},
	} {
		got := uidSet(tc.uids)
		if got != tc.want {
			t.Errorf("uidSet(%v) = %q, want %q", tc.uids, got, tc.want)
		}
		if n := setSize(got); n != tc.n {
			t.Errorf("setSize(%q) = %d, want %d", got, n, tc.n)
		}
	}
	if n := setSize("10:8"); n != 3 {
		t.Errorf(`setSize("10:8") = %d, want 3 (a range may come high:low)`, n)
	}
}

func TestWithFlagged(t *testing.T) {
	for _, tc := range []struct {
		path string
		on   bool
		want string
	}{
		{"/m/.Sent/new/1.a,S=9", true, "/m/.Sent/cur/1.a,S=9:2,F"},
		{"/m/cur/1.a:2,RS", true, "/m/cur/1.a:2,FRS"},
		{"/m/cur/1.a:2,FS", false, "/m/cur/1.a:2,S"},
	} {
		if got := withFlagged(tc.path, tc.on); got != tc.want {
			t.Errorf("withFlagged(%q, %v) = %q, want %q", tc.path, tc.on, got, tc.want)
		}
		if hasFlagged(tc.want) != tc.on {
			t.Errorf("hasFlagged(%q) = %v, want %v", tc.want, !tc.on, tc.on)
		}
	}
}
