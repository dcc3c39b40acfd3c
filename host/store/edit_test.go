package store

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const commented = `# my settings
cpus: 2 # two is enough
# memory in GiB
memory: 2
disk: 64
accel: auto
`

// TestSetKeepsComments: `berth config set` rewrites only the values that change.
func TestSetKeepsComments(t *testing.T) {
	cfg, text, err := Set([]byte(commented), []string{"cpus=3", "memory=2.5"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.CPUs != 3 || cfg.Memory != 2.5 || cfg.MemoryMiB() != 2560 {
		t.Errorf("cfg %+v", cfg)
	}
	for _, want := range []string{"# my settings", "cpus: 3 # two is enough", "# memory in GiB\nmemory: 2.5", "disk: 64"} {
		if !strings.Contains(string(text), want) {
			t.Errorf("lost %q:\n%s", want, text)
		}
	}
	// Keys at their default that the file lacks are not added.
	if strings.Contains(string(text), "bootTimeout") {
		t.Errorf("defaults were added:\n%s", text)
	}
	got, err := ParseConfig(text)
	if err != nil || !reflect.DeepEqual(got, cfg) {
		t.Errorf("reparsed %+v, %v; want %+v", got, err, cfg)
	}
}

// TestSetRefuses: every refusal names the key, the value and what is allowed.
func TestSetRefuses(t *testing.T) {
	for _, tt := range []struct {
		set  []string
		want []string
	}{
		{[]string{"cpus=0"}, []string{"cpus: 0 is out of range", "want a whole number from 1 to 256"}},
		{[]string{"memory=abc"}, []string{`memory: "abc" is not allowed`, "from 1 to 1024", "fractions allowed"}},
		{[]string{"memory=0.5"}, []string{"memory: 0.5 GiB is out of range", "from 1 to 1024"}},
		{[]string{"cpus=2.5"}, []string{`cpus: "2.5" is not allowed`, "whole number"}},
		{[]string{"accel=xen"}, []string{`accel: "xen" is not allowed`, "auto, kvm, hvf, whpx"}},
		{[]string{"disk=10"}, []string{"disk: 10 GiB is smaller than the current 64 GiB", "can only grow"}},
		{[]string{"memroy=2"}, []string{`unknown key "memroy"`, "cpus, memory"}},
		{[]string{"cpus"}, []string{`"cpus": want KEY=VALUE`}},
		{[]string{"dns=1.1.1.1,nope"}, []string{`dns: "nope" is not allowed`, "IP addresses"}},
		{[]string{"env.1X=a"}, []string{`env: "1X" is not allowed as a name`}},
		{[]string{"cpus.x=1"}, []string{`"cpus" has no sub-keys`}},
		{[]string{"idle.nope=1"}, []string{`"idle" has no key "nope"`}},
		{[]string{"shares=relative"}, []string{`shares: "relative" is not an absolute path`}},
		{[]string{"cpus=4", "memory=abc"}, []string{"memory"}}, // nothing applies when one is bad
	} {
		_, text, err := Set([]byte(commented), tt.set)
		if err == nil {
			t.Errorf("%v: accepted:\n%s", tt.set, text)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%v: %q lacks %q", tt.set, err, w)
			}
		}
	}
}

func TestSetListsMapsAndReset(t *testing.T) {
	dir := t.TempDir()
	cfg, text, err := Set([]byte(commented), []string{"dns=1.1.1.1, 9.9.9.9", "env.HTTP_PROXY=http://p:3128", "env.A=b=c", "shares=" + dir + ":ro", "arch=arm64"})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cfg.DNS, []string{"1.1.1.1", "9.9.9.9"}) || cfg.Env["HTTP_PROXY"] != "http://p:3128" || cfg.Env["A"] != "b=c" ||
		len(cfg.Shares) != 1 || cfg.Shares[0].Path != dir || !cfg.Shares[0].ReadOnly || cfg.Arch != "arm64" {
		t.Fatalf("cfg %+v", cfg)
	}
	if v, _ := Get(cfg, "env.A"); v != "b=c" {
		t.Errorf("get env.A = %q", v)
	}
	if v, _ := Get(cfg, "dns"); v != "- 1.1.1.1\n- 9.9.9.9" {
		t.Errorf("get dns = %q", v)
	}
	// Empty values: a map entry goes, a key goes back to its default, [] empties a list.
	cfg, text, err = Set(text, []string{"env.A=", "arch=", "dns=[]", "shares=[]", "cpus=4"})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := cfg.Env["A"]; ok || cfg.Arch != DefaultConfig().Arch || len(cfg.DNS) != 0 || len(cfg.Shares) != 0 || cfg.CPUs != 4 {
		t.Errorf("cfg %+v\n%s", cfg, text)
	}
	if strings.Contains(string(text), "dns") {
		t.Errorf("an empty dns list stays in the file:\n%s", text)
	}
	// Sections: struct fields by their names, durations as written.
	cfg, _, err = Set(text, []string{"idle.pauseAfter=90s", "proxy.http=http://proxy.example:3128"})
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := Get(cfg, "idle.pauseAfter"); v != "1m30s" && v != "90s" {
		t.Errorf("idle.pauseAfter = %q", v)
	}
	if v, _ := Get(cfg, "proxy.http"); v != "http://proxy.example:3128" {
		t.Errorf("proxy.http = %q", v)
	}
	if _, err := Get(cfg, "nope"); err == nil {
		t.Error("get of an unknown key")
	}
	if v, _ := Get(cfg, "memory"); v != "2" {
		t.Errorf("get memory = %q", v)
	}
}

// TestOldFilesRead: whole-number memory (files from before fractions) reads as before and
// a save keeps it a whole number.
func TestOldFilesRead(t *testing.T) {
	c, err := ParseConfig([]byte("cpus: 2\nmemory: 4\n"))
	if err != nil || c.Memory != 4 || c.MemoryMiB() != 4096 {
		t.Fatalf("%+v %v", c, err)
	}
	if !strings.Contains(string(c.Marshal()), "memory: 4\n") {
		t.Errorf("marshal: %s", c.Marshal())
	}
	c.Memory = 1.5
	if c.MemoryMiB() != 1536 {
		t.Errorf("1.5 GiB = %d MiB", c.MemoryMiB())
	}
}

// TestSaveConfigKeepsComments: the start flags and the tray save through Merge too.
func TestSaveConfigKeepsComments(t *testing.T) {
	t.Setenv("BERTH_HOME", t.TempDir())
	inst, err := Create("dev", DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(inst.Path(ConfigFile), []byte(commented), 0o600)
	cfg, _ := inst.Config()
	cfg.Disk = 100
	if err := inst.SaveConfig(cfg); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(inst.Path(ConfigFile))
	if !strings.Contains(string(b), "cpus: 2 # two is enough") || !strings.Contains(string(b), "disk: 100") {
		t.Errorf("saved:\n%s", b)
	}
	// SetConfig refuses without touching the file.
	if _, _, err := inst.SetConfig([]string{"cpus=0"}); err == nil {
		t.Error("cpus=0 accepted")
	}
	if b2, _ := os.ReadFile(inst.Path(ConfigFile)); string(b2) != string(b) {
		t.Errorf("a refused set changed the file:\n%s", b2)
	}
}

// TestKeysInStep: every key of Config is in Keys, in order, and documented in
// docs/config.md; Keys has nothing else.
func TestKeysInStep(t *testing.T) {
	var tags []string
	ct := reflect.TypeFor[Config]()
	for i := range ct.NumField() {
		tag, _, _ := strings.Cut(ct.Field(i).Tag.Get("yaml"), ",")
		tags = append(tags, tag)
	}
	if !reflect.DeepEqual(tags, KeyNames()) {
		t.Errorf("Config's keys %v\nKeys         %v", tags, KeyNames())
	}
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "config.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range Keys {
		if !strings.Contains(string(doc), "### `"+k.Name+"`") {
			t.Errorf("docs/config.md has no section \"### `%s`\"", k.Name)
		}
		if k.Allowed == "" || k.Doc == "" {
			t.Errorf("key %s: no Allowed or Doc", k.Name)
		}
	}
}
