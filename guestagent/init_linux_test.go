//go:build linux

package guestagent

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// From a q35 guest running Debian's 6.1 kernel with evdev and button loaded.
const testInputDevices = `I: Bus=0019 Vendor=0000 Product=0001 Version=0000
N: Name="Power Button"
P: Phys=LNXPWRBN/button/input0
S: Sysfs=/devices/LNXSYSTM:00/LNXPWRBN:00/input/input0
U: Uniq=
H: Handlers=kbd event0 
B: PROP=0
B: EV=3
B: KEY=10000000000000 0

I: Bus=0011 Vendor=0001 Product=0001 Version=ab41
N: Name="AT Translated Set 2 keyboard"
P: Phys=isa0060/serio0/input0
S: Sysfs=/devices/platform/i8042/serio0/input/input1
U: Uniq=
H: Handlers=sysrq kbd leds event1 
B: PROP=0
B: EV=120013
B: KEY=402000000 3803078f800d001 feffffdfffefffff fffffffffffffffe
B: MSC=10
B: LED=7

I: Bus=0011 Vendor=0002 Product=0006 Version=0000
N: Name="ImExPS/2 Generic Explorer Mouse"
P: Phys=isa0060/serio1/input0
S: Sysfs=/devices/platform/i8042/serio1/input/input3
U: Uniq=
H: Handlers=mouse0 event2 
B: PROP=1
B: EV=7
B: KEY=1f0000 0 0 0 0
B: REL=143

I: Bus=0019 Vendor=0001 Product=0001 Version=0100
N: Name="gpio-keys"
H: Handlers=kbd 
B: KEY=10000000000000 0
`

func TestParseInputDevices(t *testing.T) {
	devs, err := parseInputDevices(strings.NewReader(testInputDevices), 64)
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) != 4 || devs[0].Name != "Power Button" || devs[0].eventNode() != "event0" {
		t.Fatalf("got %+v", devs)
	}
	if !devs[0].hasKey(keyPower) || devs[2].hasKey(keyPower) {
		t.Fatal("wrong KEY_POWER detection")
	}
	nodes, names := powerKeyNodes(devs)
	// The keyboard can send KEY_POWER too; gpio-keys has no evdev node yet.
	if !reflect.DeepEqual(nodes, []string{"event0", "event1"}) || names[0] != "Power Button" {
		t.Fatalf("nodes %v names %v", nodes, names)
	}
}

func TestParseBitmap(t *testing.T) {
	// 32-bit kernels print 32-bit words.
	w, err := parseBitmap("100000 0 0 0", 32)
	if err != nil {
		t.Fatal(err)
	}
	d := inputDevice{Keys: w}
	if !d.hasKey(116) || d.hasKey(115) {
		t.Fatalf("bitmap %x", w)
	}
	if _, err := parseBitmap("zz", 64); err == nil {
		t.Fatal("bad bitmap accepted")
	}
}

func inputEvent(typ, code uint16, value int32) []byte {
	b := make([]byte, inputEventSize)
	binary.NativeEndian.PutUint16(b[16:], typ)
	binary.NativeEndian.PutUint16(b[18:], code)
	binary.NativeEndian.PutUint32(b[20:], uint32(value))
	return b
}

func TestIsPowerPress(t *testing.T) {
	if !isPowerPress(inputEvent(evKey, keyPower, 1)) {
		t.Fatal("press not seen")
	}
	for _, ev := range [][]byte{inputEvent(evKey, keyPower, 0), inputEvent(evKey, 115, 1), inputEvent(0, 0, 0), {1, 2}} {
		if isPowerPress(ev) {
			t.Fatalf("%x taken for a press", ev)
		}
	}
}

const testMountinfo = `22 1 0:21 / / rw,relatime shared:1 - overlay overlay rw,lowerdir=/mnt/root-ro,upperdir=/mnt/rw/upper,workdir=/mnt/rw/work
23 22 0:5 / /dev rw,nosuid shared:2 - devtmpfs devtmpfs rw,size=1000k,mode=755
30 22 254:16 / /var/lib/berth rw,noatime shared:10 - ext4 /dev/vdb rw
31 22 254:16 /docker /var/lib/docker rw,noatime shared:10 - ext4 /dev/vdb rw
32 22 254:16 /containerd /var/lib/containerd rw,noatime shared:10 - ext4 /dev/vdb rw
40 22 0:50 / /Users/me/My\040Projects rw - virtiofs home rw
41 31 0:60 / /var/lib/docker/overlay2/abc/merged rw,relatime - overlay overlay rw
42 22 0:61 / /run/docker/netns/xyz rw - nsfs nsfs rw
`

func TestParseMountinfo(t *testing.T) {
	ms, err := parseMountinfo(strings.NewReader(testMountinfo))
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 8 || ms[2] != (mountEntry{"/var/lib/berth", "ext4", "/dev/vdb"}) || ms[5].MountPoint != "/Users/me/My Projects" {
		t.Fatalf("got %+v", ms)
	}
	var order []string
	for _, m := range unmountOrder(ms) {
		order = append(order, m.MountPoint)
	}
	want := []string{"/run/docker/netns/xyz", "/var/lib/docker/overlay2/abc/merged", "/Users/me/My Projects",
		"/var/lib/containerd", "/var/lib/docker", "/var/lib/berth"}
	if !reflect.DeepEqual(order, want) {
		t.Fatalf("unmount order %q, want %q", order, want)
	}
	if _, err := parseMountinfo(strings.NewReader("1 2 3\n")); err == nil {
		t.Fatal("malformed mountinfo accepted")
	}
}

func TestUnescapeMountinfo(t *testing.T) {
	for in, want := range map[string]string{`a\040b`: "a b", `tab\011`: "tab\t", `back\134slash`: `back\slash`, `end\04`: `end\04`, "plain": "plain"} {
		if got := unescapeMountinfo(in); got != want {
			t.Errorf("unescape(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestLogSink(t *testing.T) {
	var s logSink
	s.Write([]byte("before open\n"))
	p := filepath.Join(t.TempDir(), "run", "agent.log")
	if err := s.open(p); err != nil {
		t.Fatal(err)
	}
	s.Write([]byte("after open\n"))
	b, _ := os.ReadFile(p)
	if string(b) != "before open\nafter open\n" {
		t.Fatalf("log %q", b)
	}
	// Rotation keeps one old file and starts a new one.
	big := bytes.Repeat([]byte("x"), maxAgentLog)
	s.Write(big)
	s.Write([]byte("new\n"))
	if b, _ := os.ReadFile(p); string(b) != "new\n" {
		t.Fatalf("after rotation the log has %d bytes", len(b))
	}
	if st, err := os.Stat(p + ".1"); err != nil || st.Size() != maxAgentLog {
		t.Fatalf("rotated file: %v %v", st, err)
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, io.ErrClosedPipe }

func TestTeeLines(t *testing.T) {
	var a, b bytes.Buffer
	teeLines(strings.NewReader("one\ntwo\nlast without newline"), failWriter{}, &a, &b)
	if a.String() != "one\ntwo\nlast without newline" || b.String() != a.String() {
		t.Fatalf("a=%q b=%q", a.String(), b.String())
	}
}

func TestFanoutHandler(t *testing.T) {
	var info, debug bytes.Buffer
	log := slog.New(fanoutHandler{
		slog.NewTextHandler(&info, &slog.HandlerOptions{Level: slog.LevelInfo}),
		slog.NewTextHandler(&debug, &slog.HandlerOptions{Level: slog.LevelDebug}),
	}).With("proc", "init")
	log.Debug("dbg")
	log.Info("hello", "k", 1)
	if strings.Contains(info.String(), "dbg") || !strings.Contains(info.String(), "hello") || !strings.Contains(info.String(), "proc=init") {
		t.Fatalf("info handler got %q", info.String())
	}
	if !strings.Contains(debug.String(), "dbg") || !strings.Contains(debug.String(), "k=1") {
		t.Fatalf("debug handler got %q", debug.String())
	}
	if !log.Handler().Enabled(context.Background(), slog.LevelDebug) {
		t.Fatal("fanout not enabled for debug")
	}
}
