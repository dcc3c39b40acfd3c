//go:build linux

package guestagent

import (
	"encoding/binary"
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
