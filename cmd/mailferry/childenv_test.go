package main

import (
	"slices"
	"strings"
	"testing"
)

// TestF6ChildEnvHidesSecrets: a password or token command inherits neither
// mailferry's own secret variables nor one a config names as holding a
// password (I6); everything else (PATH, pass's PASSWORD_STORE_DIR) stays.
func TestF6ChildEnvHidesSecrets(t *testing.T) {
	got := childEnv([]string{
		"PATH=/usr/bin",
		"PASSWORD_STORE_DIR=/home/a/.pw",
		"MAILFERRY_SRC_PASSWORD=s3cret",
		"MAILFERRY_DST_TOKEN=tok",
		"mailferry_dst_password=low",
		"OLD_MAIL_PW=s3cret2",
		"HOME=/home/a",
	}, []string{"OLD_MAIL_PW"})
	want := []string{"PATH=/usr/bin", "PASSWORD_STORE_DIR=/home/a/.pw", "HOME=/home/a"}
	if !slices.Equal(got, want) {
		t.Errorf("childEnv = %v, want %v", got, want)
	}
	for _, kv := range got {
		if strings.Contains(kv, "s3cret") || strings.Contains(kv, "tok") {
			t.Errorf("a secret reached the child: %s", kv)
		}
	}
}
