//go:build linux

package guestagent

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"
)

// Linux input constants (linux/input-event-codes.h).
const (
	evKey    = 0x01
	keyPower = 116
	// inputEventSize is sizeof(struct input_event) on 64-bit kernels: a 16-byte
	// timeval, type and code (u16 each) and value (s32).
	inputEventSize = 24
)

// inputDevice is one block of /proc/bus/input/devices.
type inputDevice struct {
	Name     string
	Handlers []string
	Keys     []uint64 // the KEY capability bitmap, least significant word first
}

func (d inputDevice) hasKey(code int) bool {
	w := code / 64
	return w < len(d.Keys) && d.Keys[w]&(1<<(code%64)) != 0
}

// eventNode returns the device's evdev node name ("event0"), "" when evdev is absent.
func (d inputDevice) eventNode() string {
	for _, h := range d.Handlers {
		if strings.HasPrefix(h, "event") {
			return h
		}
	}
	return ""
}

// parseInputDevices reads /proc/bus/input/devices. The capability bitmaps are printed
// as hex words of the kernel's long, most significant first; wordBits is that width.
func parseInputDevices(r io.Reader, wordBits int) ([]inputDevice, error) {
	var out []inputDevice
	var cur *inputDevice
	s := bufio.NewScanner(r)
	for s.Scan() {
		line := s.Text()
		if strings.TrimSpace(line) == "" {
			cur = nil
			continue
		}
		if cur == nil {
			out = append(out, inputDevice{})
			cur = &out[len(out)-1]
		}
		switch {
		case strings.HasPrefix(line, "N: Name="):
			cur.Name = strings.Trim(strings.TrimPrefix(line, "N: Name="), `"`)
		case strings.HasPrefix(line, "H: Handlers="):
			cur.Handlers = strings.Fields(strings.TrimPrefix(line, "H: Handlers="))
		case strings.HasPrefix(line, "B: KEY="):
			keys, err := parseBitmap(strings.TrimPrefix(line, "B: KEY="), wordBits)
			if err != nil {
				return out, fmt.Errorf("device %q: %w", cur.Name, err)
			}
			cur.Keys = keys
		}
	}
	return out, s.Err()
}

// parseBitmap turns "10000000000000 0" (most significant word first) into 64-bit words,
// least significant first.
func parseBitmap(s string, wordBits int) ([]uint64, error) {
	f := strings.Fields(s)
	var bits []bool
	for i := len(f) - 1; i >= 0; i-- {
		v, err := strconv.ParseUint(f[i], 16, 64)
		if err != nil {
			return nil, fmt.Errorf("malformed bitmap %q: %w", s, err)
		}
		for b := 0; b < wordBits; b++ {
			bits = append(bits, v&(1<<b) != 0)
		}
	}
	words := make([]uint64, (len(bits)+63)/64)
	for i, on := range bits {
		if on {
			words[i/64] |= 1 << (i % 64)
		}
	}
	return words, nil
}

// powerKeyNodes returns the evdev nodes of the devices that can send KEY_POWER: the
// ACPI "Power Button" on x86 (QEMU system_powerdown), gpio-keys on arm64 `virt`.
func powerKeyNodes(devs []inputDevice) (nodes, names []string) {
	for _, d := range devs {
		if n := d.eventNode(); n != "" && d.hasKey(keyPower) {
			nodes = append(nodes, n)
			names = append(names, d.Name)
		}
	}
	return nodes, names
}

// isPowerPress reports whether one input_event is a KEY_POWER press.
func isPowerPress(ev []byte) bool {
	if len(ev) < inputEventSize {
		return false
	}
	typ := binary.NativeEndian.Uint16(ev[16:])
	code := binary.NativeEndian.Uint16(ev[18:])
	value := int32(binary.NativeEndian.Uint32(ev[20:]))
	return typ == evKey && code == keyPower && value == 1
}

// watchPowerButton sends on power when a power key is pressed. Nobody else handles the
// button in the guest (there is no acpid or logind), so without this a hypervisor's
// "shut down" request would do nothing.
func watchPowerButton(log *slog.Logger, power chan<- string) {
	var nodes, names []string
	// The input devices register while their modules load during boot; give them a moment.
	for i := 0; i < 20 && len(nodes) == 0; i++ {
		if i > 0 {
			time.Sleep(100 * time.Millisecond)
		}
		f, err := os.Open("/proc/bus/input/devices")
		if err != nil {
			continue
		}
		devs, err := parseInputDevices(f, strconv.IntSize)
		f.Close()
		if err != nil {
			log.Warn("failed to parse input devices", "err", err)
		}
		nodes, names = powerKeyNodes(devs)
	}
	if len(nodes) == 0 {
		log.Warn("no power button found; the guest powers off only through the agent")
		return
	}
	for i, n := range nodes {
		path := "/dev/input/" + n
		var f *os.File
		var err error
		for try := 0; try < 20; try++ { // devtmpfs creates the node asynchronously
			if f, err = os.Open(path); err == nil || !errors.Is(err, os.ErrNotExist) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if err != nil {
			log.Warn("failed to open power button", "device", path, "name", names[i], "err", err)
			continue
		}
		log.Info("watching power button", "device", path, "name", names[i])
		go func(f *os.File, name string) {
			defer f.Close()
			buf := make([]byte, inputEventSize*64)
			for {
				n, err := f.Read(buf)
				if err != nil {
					log.Warn("power button read failed", "device", f.Name(), "err", err)
					return
				}
				for off := 0; off+inputEventSize <= n; off += inputEventSize {
					if isPowerPress(buf[off : off+inputEventSize]) {
						select {
						case power <- "power button (" + name + ")":
						default:
						}
					}
				}
			}
		}(f, names[i])
	}
}
