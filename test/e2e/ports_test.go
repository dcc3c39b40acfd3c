//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/host/api"
)

// TestPorts checks that published ports answer on the host at once, on exactly the address
// asked for (docs/ports.md has the table), and that a port conflict hurts nobody else.
func TestPorts(t *testing.T) {
	e := newEnv(t)
	e.mustBerth("start")
	e.busyboxImage(image)
	ns := newNetns(t)

	// Published right after `docker run` returns.
	e.mustDocker("run", "-d", "--name", "web", "-p", "8080:80", image, "testsrv", "http", "80")
	took, body := waitHTTP(t, "http://127.0.0.1:8080/", 5*time.Second)
	t.Logf("port 8080 answered %s after docker run returned", took)
	if body != "hello from 80\n" {
		t.Errorf("8080 body %q", body)
	}

	e.mustDocker("run", "-d", "-p", "127.0.0.1:8081:80", image, "testsrv", "http", "80")
	e.mustDocker("run", "-d", "-p", "0.0.0.0:8082:80", image, "testsrv", "http", "80")
	e.mustDocker("run", "-d", "-p", "8083:53/udp", image, "testsrv", "udp", "53")
	e.mustDocker("run", "-d", "-p", "9100-9102:9100-9102", image, "testsrv", "http", "9100", "9101", "9102")
	for _, p := range []string{"8081", "8082", "9100", "9101", "9102"} {
		waitHTTP(t, "http://127.0.0.1:"+p+"/", 5*time.Second)
	}
	t.Run("udp", func(t *testing.T) {
		deadline := time.Now().Add(5 * time.Second)
		for {
			got, err := udpRoundTrip("127.0.0.1:8083", "ping")
			if err == nil {
				if got != "echo:ping" {
					t.Errorf("udp reply %q", got)
				}
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("udp 8083: %v", err)
			}
		}
	})
	t.Run("not on the LAN by default", func(t *testing.T) {
		// Control: the namespace does reach the host's non-loopback address.
		ln, err := net.Listen("tcp", ns.hostIP+":0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "control") }))
		if out, err := ns.get("http://" + ln.Addr().String() + "/"); err != nil || out != "control" {
			t.Fatalf("the test namespace cannot reach the host at all: %q %v", out, err)
		}
		// The default bind is loopback, also for ports published on 0.0.0.0.
		for _, p := range []string{"8080", "8081", "8082"} {
			if out, err := ns.get(fmt.Sprintf("http://%s:%s/", ns.hostIP, p)); err == nil {
				t.Errorf("port %s reachable from another host: %s", p, out)
			}
		}
	})

	t.Run("host port in use", func(t *testing.T) {
		busy, err := net.Listen("tcp", "127.0.0.1:8090")
		if err != nil {
			t.Fatal(err)
		}
		defer busy.Close()
		e.mustDocker("run", "-d", "--name", "clash", "-p", "8090:80", image, "testsrv", "http", "80")
		var failed *api.PortForward
		deadline := time.Now().Add(5 * time.Second)
		for failed == nil && time.Now().Before(deadline) {
			for _, p := range e.ports() {
				if p.HostPort == 8090 && p.State == "failed" {
					failed = &p
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
		if failed == nil || !strings.Contains(failed.Error, "address already in use") {
			t.Fatalf("no failed forward for 8090: %+v", e.ports())
		}
		if out := e.mustBerth("ports"); !strings.Contains(out, "address already in use") {
			t.Errorf("berth ports does not show the conflict:\n%s", out)
		}
		if out := e.mustBerth("status"); !strings.Contains(out, "8090") {
			t.Errorf("berth status does not show the conflict:\n%s", out)
		}
		// Everyone else is unaffected.
		waitHTTP(t, "http://127.0.0.1:8080/", time.Second)
		if st := e.status("default"); st.State != api.StateRunning {
			t.Errorf("state %s after a port conflict", st.State)
		}
	})

	t.Run("closed after docker stop", func(t *testing.T) {
		e.mustDocker("stop", "-t", "1", "web")
		deadline := time.Now().Add(5 * time.Second)
		for {
			c, err := net.DialTimeout("tcp", "127.0.0.1:8080", time.Second)
			if err != nil {
				return
			}
			c.Close()
			if time.Now().After(deadline) {
				t.Fatal("host port 8080 still open 5s after docker stop")
			}
			time.Sleep(50 * time.Millisecond)
		}
	})

	t.Run("listener in the VM", func(t *testing.T) {
		// A --network host server is no published port; the listener scan finds it.
		e.mustDocker("run", "-d", "--network", "host", image, "testsrv", "http", "8095")
		waitHTTP(t, "http://127.0.0.1:8095/", 5*time.Second)
	})

	t.Run("bind address 0.0.0.0", func(t *testing.T) {
		e.mustBerth("stop")
		cfgPath := filepath.Join(e.home, "default", "berth.yaml")
		b, _ := os.ReadFile(cfgPath)
		os.WriteFile(cfgPath, []byte(strings.Replace(string(b), "portBindAddress: 127.0.0.1", "portBindAddress: 0.0.0.0", 1)), 0o600)
		e.mustBerth("start")
		e.mustDocker("run", "-d", "-p", "0.0.0.0:8082:80", image, "testsrv", "http", "80")
		e.mustDocker("run", "-d", "-p", "127.0.0.1:8081:80", image, "testsrv", "http", "80")
		waitHTTP(t, "http://127.0.0.1:8082/", 5*time.Second)
		waitHTTP(t, "http://127.0.0.1:8081/", 5*time.Second)
		if out, err := ns.get(fmt.Sprintf("http://%s:8082/", ns.hostIP)); err != nil || out != "hello from 80\n" {
			t.Errorf("0.0.0.0:8082 from another host: %q, %v", out, err)
		}
		if out, err := ns.get(fmt.Sprintf("http://%s:8081/", ns.hostIP)); err == nil {
			t.Errorf("127.0.0.1:8081 reachable from another host: %s", out)
		}
	})
}

func (e *env) ports() []api.PortForward {
	out, _ := e.berth("ports", "--json")
	var p []api.PortForward
	json.Unmarshal([]byte(out), &p)
	return p
}

// waitHTTP retries a GET until it answers, and returns how long that took.
func waitHTTP(t *testing.T, url string, within time.Duration) (time.Duration, string) {
	t.Helper()
	t0 := time.Now()
	c := http.Client{Timeout: time.Second}
	for {
		resp, err := c.Get(url)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			return time.Since(t0), string(b)
		}
		if time.Since(t0) > within {
			t.Fatalf("%s did not answer within %s: %v", url, within, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func udpRoundTrip(addr, msg string) (string, error) {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(500 * time.Millisecond))
	if _, err := c.Write([]byte(msg)); err != nil {
		return "", err
	}
	buf := make([]byte, 1500)
	n, err := c.Read(buf)
	return string(buf[:n]), err
}

// netns is a second "host" on a veth link: traffic from it reaches the host's non-loopback
// address, as a machine on the LAN would.
type netns struct {
	t      *testing.T
	name   string
	hostIP string
	srv    string // testsrv binary
}

func newNetns(t *testing.T) *netns {
	t.Helper()
	name := fmt.Sprintf("berth%d", os.Getpid()%100000)
	veth := "bv" + name[5:]
	n := &netns{t: t, name: name, hostIP: "10.231.77.1"}
	run := func(args ...string) {
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	run("ip", "netns", "add", name)
	t.Cleanup(func() {
		exec.Command("ip", "netns", "del", name).Run()
		exec.Command("ip", "link", "del", veth+"h").Run()
	})
	run("ip", "link", "add", veth+"h", "type", "veth", "peer", "name", veth+"n")
	run("ip", "link", "set", veth+"n", "netns", name)
	run("ip", "addr", "add", n.hostIP+"/30", "dev", veth+"h")
	run("ip", "link", "set", veth+"h", "up")
	run("ip", "netns", "exec", name, "ip", "addr", "add", "10.231.77.2/30", "dev", veth+"n")
	run("ip", "netns", "exec", name, "ip", "link", "set", veth+"n", "up")
	run("ip", "netns", "exec", name, "ip", "link", "set", "lo", "up")
	srv, err := buildTestsrv(t.TempDir(), runtime.GOARCH)
	if err != nil {
		t.Fatal(err)
	}
	n.srv = filepath.Join(t.TempDir(), "testsrv")
	os.WriteFile(n.srv, srv, 0o755)
	return n
}

// get fetches url from inside the namespace.
func (n *netns) get(url string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", "netns", "exec", n.name, n.srv, "get", url).CombinedOutput()
	return string(out), err
}
