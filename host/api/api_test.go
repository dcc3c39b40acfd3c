package api

import (
	"encoding/json"
	"go/parser"
	"go/token"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// The control API's JSON is public: scripts parse `berth status --json` and the tray and the
// CLI of another release read it. These tests pin the field names of every type the API
// owns; a change here is an API change (docs/control-api.md).

func TestJSONPinned(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name string
		v    any
		want string
	}{
		{"Guest", Guest{
			ProtocolVersion: 2, AgentVersion: "v1", Kernel: "6.12.0", Arch: "amd64",
			KernelBoot: 1500 * time.Millisecond, Uptime: time.Minute, Engine: EngineRunning,
			EngineVersion: "28.0.1", IP: "192.168.127.2", DataDisk: DiskUsage{Total: 100, Used: 91},
			EngineAPIVersion: "1.48", ContainerdVersion: "2.0.0", RuncVersion: "1.2.0", InitVersion: "0.19.0", OS: "Debian",
		}, `{"protocolVersion":2,"agentVersion":"v1","kernel":"6.12.0","arch":"amd64","kernelBoot":1500000000,` +
			`"uptime":60000000000,"engine":"running","engineVersion":"28.0.1","ip":"192.168.127.2",` +
			`"dataDisk":{"total":100,"used":91},"engineAPIVersion":"1.48","containerdVersion":"2.0.0",` +
			`"runcVersion":"1.2.0","initVersion":"0.19.0","os":"Debian"}`},
		{"Guest empty", Guest{},
			`{"protocolVersion":0,"agentVersion":"","kernel":"","arch":"","kernelBoot":0,"uptime":0,"engine":"","dataDisk":{"total":0,"used":0}}`},
		{"Event disk", Event{Time: at, Type: EventDisk, State: StateRunning, Message: "m", Disk: &DiskUsage{Total: 2, Used: 1}},
			`{"time":"2026-01-02T03:04:05Z","type":"disk","state":"Running","message":"m","disk":{"total":2,"used":1}}`},
		{"Event phase", Event{Time: at, State: StateStarting, Phase: PhaseAgent, Done: true},
			`{"time":"2026-01-02T03:04:05Z","state":"Starting","phase":"agent","done":true}`},
		{"ExecRequest", ExecRequest{Argv: []string{"sh"}, Env: []string{"A=1"}, Dir: "/", TTY: true, Rows: 24, Cols: 80},
			`{"argv":["sh"],"env":["A=1"],"dir":"/","tty":true,"rows":24,"cols":80}`},
		{"PortForward", PortForward{Proto: "tcp", HostIP: "127.0.0.1", HostPort: 8080, GuestIP: "0.0.0.0", GuestPort: 8080,
			Container: "web", Source: "container", State: "failed", Error: "in use"},
			`{"proto":"tcp","hostIP":"127.0.0.1","hostPort":8080,"guestIP":"0.0.0.0","guestPort":8080,"container":"web",` +
				`"source":"container","state":"failed","error":"in use"}`},
		{"Mount", Mount{Path: "/Users/a", Type: "virtiofs", ReadOnly: true, Notify: true, Watched: 3, State: "mounted"},
			`{"path":"/Users/a","type":"virtiofs","readOnly":true,"notify":true,"watchedDirs":3,"state":"mounted"}`},
		{"StopRequest", StopRequest{Force: true}, `{"force":true}`},
		{"ErrorResponse", ErrorResponse{Error: "e"}, `{"error":"e"}`},
		{"Status guest", Status{Name: "default", State: StateRunning, Guest: &Guest{Engine: EngineStarting}},
			`{"name":"default","state":"Running","pid":0,"cpus":0,"memoryGiB":0,"memoryMiB":0,"diskGiB":0,"dockerSocket":"","dockerContext":"",` +
				`"guest":{"protocolVersion":0,"agentVersion":"","kernel":"","arch":"","kernelBoot":0,"uptime":0,"engine":"starting","dataDisk":{"total":0,"used":0}}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := json.Marshal(tt.v)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tt.want {
				t.Errorf("JSON changed:\n got %s\nwant %s", b, tt.want)
			}
			// And it reads back into the same value.
			back := reflect.New(reflect.TypeOf(tt.v))
			if err := json.Unmarshal([]byte(tt.want), back.Interface()); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(back.Elem().Interface(), tt.v) {
				t.Errorf("round trip: got %+v, want %+v", back.Elem().Interface(), tt.v)
			}
		})
	}
}

func TestDiskNearlyFull(t *testing.T) {
	tests := []struct {
		used, total uint64
		want        bool
	}{
		{0, 0, false}, {90, 100, false}, {91, 100, true}, {100, 100, true}, {1, 0, false},
	}
	for _, tt := range tests {
		if got := (DiskUsage{Used: tt.used, Total: tt.total}).NearlyFull(); got != tt.want {
			t.Errorf("%d of %d: NearlyFull = %v, want %v", tt.used, tt.total, got, tt.want)
		}
	}
}

// TestOwnTypes: the control API must not expose the agent protocol's types, or a guest
// protocol change becomes an API change.
func TestOwnTypes(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			if strings.Contains(imp.Path.Value, "/guestagent") {
				t.Errorf("%s imports %s", name, imp.Path.Value)
			}
		}
	}
}
