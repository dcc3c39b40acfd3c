package guestagent

import (
	"encoding/json"
	"net"
	"strings"
	"testing"
)

// Fuzz targets for what the agent parses from bytes it does not write itself: the kernel
// command line the host builds, /proc/net, and the engine's container list. The Linux-only
// parsers (mountinfo, the ext4 superblock, /proc/bus/input/devices) are in
// fuzz_linux_test.go.

func FuzzParseCmdline(f *testing.F) {
	f.Add(`console=ttyS0 berth.debug berth.time=1767225600 root="/dev/vda 1" quiet`)
	f.Add(`a="b c"d=e "x=y z" =v k= k=again`)
	f.Add("\"unterminated\tword\n")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		c := ParseCmdline(s)
		for k := range c {
			c.Flag(k)
		}
		if strings.ContainsRune(s, '"') {
			return
		}
		// Without quotes it is plain words split on blanks; a later duplicate wins.
		want := map[string]string{}
		for _, w := range strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == '\t' || r == '\n' }) {
			k, v, _ := strings.Cut(w, "=")
			want[k] = v
		}
		if len(want) != len(c) {
			t.Fatalf("ParseCmdline(%q) = %q, want %q", s, c, want)
		}
		for k, v := range want {
			if got, ok := c[k]; !ok || got != v {
				t.Fatalf("ParseCmdline(%q)[%q] = %q, want %q", s, k, got, v)
			}
		}
	})
}

func FuzzParseProcNet(f *testing.F) {
	header := "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
	f.Add(header+
		"   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0\n"+
		"   1: 0100007F:2382 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1 0000000000000000 100 0 0 10 0\n", false)
	f.Add(header+
		"   0: 00000000000000000000000000000000:0BB8 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 3\n"+
		"   1: 00000000000000000000000001000000:0050 00000000000000000000000000000000:0000 0A 0 0 0 0 0 4\n", true)
	f.Add(header+"   0: 0000:0000 00000000:0000 0A\n   1: zz:1F90 x 0A\n", true)
	f.Fuzz(func(t *testing.T, s string, loopback bool) {
		for _, pn := range [][2]string{{"tcp", "0A"}, {"udp", "07"}} {
			ports, err := parseProcNet(strings.NewReader(s), pn[0], pn[1], loopback)
			if err != nil {
				continue
			}
			for _, p := range ports {
				ip := net.ParseIP(p.GuestIP)
				switch {
				case p.Proto != pn[0] || p.Port < 1 || p.Port > 65535 || p.Source != "listener":
					t.Fatalf("bad port %+v", p)
				case ip == nil || !(ip.IsUnspecified() || ip.IsLoopback()):
					t.Fatalf("port %+v has an address that is no wildcard or loopback", p)
				case ip.IsLoopback() && !loopback:
					t.Fatalf("loopback port %+v without loopback", p)
				}
			}
		}
	})
}

// FuzzContainerPorts: the engine's GET /containers/json, as the port watcher decodes it.
func FuzzContainerPorts(f *testing.F) {
	f.Add([]byte(`[{"Names":["/web"],"Ports":[{"IP":"0.0.0.0","PrivatePort":80,"PublicPort":8080,"Type":"tcp"},{"PrivatePort":53,"Type":"udp"}]}]`))
	f.Add([]byte(`[{"Names":[],"Ports":[{"IP":"::","PublicPort":53,"Type":"udp"},{"PublicPort":1,"Type":"sctp"}]},{}]`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var list []dockerContainer
		if json.Unmarshal(b, &list) != nil {
			return
		}
		for _, p := range ContainerPorts(list) {
			if p.Port == 0 || (p.Proto != "tcp" && p.Proto != "udp") || p.GuestIP == "" || p.Source != "container" {
				t.Fatalf("bad port %+v from %s", p, b)
			}
		}
	})
}
