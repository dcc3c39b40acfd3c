package fileshare

import "testing"

func TestDefaultFor(t *testing.T) {
	mac := DefaultFor("darwin", "/Users/me")
	want := []string{"/Users", "/Volumes", "/private", "/var/folders"}
	if len(mac) != len(want) {
		t.Fatalf("darwin: %+v", mac)
	}
	for i, s := range mac {
		if s.Path != want[i] || s.ReadOnly {
			t.Errorf("darwin share %d: %+v, want %s writable", i, s, want[i])
		}
		if notify := !s.NoNotify; notify != (s.Path == "/Users") {
			t.Errorf("darwin share %s: notify %v", s.Path, notify)
		}
		// Docker Desktop's defaults pass the system-directory check.
		for _, sys := range systemDirs {
			if s.Path == sys {
				t.Errorf("default share %s is a refused system directory", s.Path)
			}
		}
	}
	if l := DefaultFor("linux", "/home/me"); len(l) != 1 || l[0].Path != "/home/me" {
		t.Errorf("linux: %+v", l)
	}
	if w := DefaultFor("windows", `C:\Users\me`); len(w) != 1 || w[0].Path != `C:\Users\me` {
		t.Errorf("windows: %+v", w)
	}
	if l := DefaultFor("linux", ""); l != nil {
		t.Errorf("no home: %+v", l)
	}
	// /private/etc stays refused.
	dir := t.TempDir()
	if err := Validate([]Share{{Path: "/private/etc"}}); err == nil {
		t.Error("/private/etc was accepted")
	}
	if err := Validate([]Share{{Path: dir}}); err != nil {
		t.Error(err)
	}
}
