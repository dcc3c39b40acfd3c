package fileshare

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a b ü")
	sub := filepath.Join(a, "sub")
	other := filepath.Join(dir, "other")
	file := filepath.Join(dir, "file")
	for _, d := range []string{sub, other} {
		os.MkdirAll(d, 0o755)
	}
	os.WriteFile(file, nil, 0o644)
	tests := []struct {
		name    string
		shares  []Share
		wantErr string
	}{
		{name: "ok", shares: []Share{{Path: a}, {Path: other, ReadOnly: true}}},
		{name: "none", shares: nil},
		{name: "relative", shares: []Share{{Path: "src"}}, wantErr: "not an absolute path"},
		{name: "missing", shares: []Share{{Path: filepath.Join(dir, "nope")}}, wantErr: "no such file"},
		{name: "file", shares: []Share{{Path: file}}, wantErr: "not a directory"},
		{name: "root", shares: []Share{{Path: "/"}}, wantErr: "system directory"},
		{name: "etc", shares: []Share{{Path: "/etc/"}}, wantErr: "system directory"},
		{name: "duplicate", shares: []Share{{Path: a}, {Path: a + "/"}}, wantErr: "listed twice"},
		{name: "overlap", shares: []Share{{Path: a}, {Path: sub}}, wantErr: "overlap"},
		{name: "sibling prefix is no overlap", shares: []Share{{Path: other}, {Path: filepath.Join(dir, "oth")}}, wantErr: "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Validate(tt.shares)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
			if tt.name == "sibling prefix is no overlap" && strings.Contains(err.Error(), "overlap") {
				t.Fatalf("siblings reported as overlapping: %v", err)
			}
		})
	}
}
