//go:build linux

// Command testsrv is the end-to-end suite's server and client inside containers and
// network namespaces: a static binary with no dependencies, since nothing can be pulled.
//
//	testsrv http PORT...        answer "hello from PORT" on each port
//	testsrv udp PORT            echo UDP datagrams
//	testsrv get URL             print the body, exit 1 on failure (2 s timeout)
//	testsrv sink PORT           count TCP bytes received, reply with the count when the peer half-closes
//	testsrv send ADDR BYTES     send BYTES to a sink, print the seconds it took
//	testsrv fsbench DIR MiB N   write and read a MiB-sized file, create+stat N small files;
//	                            print "write-MiB/s read-MiB/s files/s"
//	testsrv watch DIR PORT      inotify DIR; GET /wait?n=K blocks until event K exists and returns it
//	                            as "MASK NAME"; GET /count returns the number of events so far
//	testsrv vsock PORT...       try AF_VSOCK connects to CIDs 0-3 and the guest's own on each port;
//	                            exit 3 if any connects (built for 386 too: socketcall(2) there)
//	testsrv tcpprobe ADDR...    try TCP connects; exit 3 if any connects
package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: testsrv http|udp|get|sink ARG...")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "http":
		for _, p := range os.Args[2:] {
			p := p
			go func() {
				err := http.ListenAndServe(":"+p, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					fmt.Fprintf(w, "hello from %s\n", p)
				}))
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}()
		}
		select {}
	case "udp":
		pc, err := net.ListenPacket("udp", ":"+os.Args[2])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		buf := make([]byte, 65535)
		for {
			n, addr, err := pc.ReadFrom(buf)
			if err != nil {
				os.Exit(1)
			}
			pc.WriteTo(append([]byte("echo:"), buf[:n]...), addr)
		}
	case "get":
		c := http.Client{Timeout: 2 * time.Second}
		resp, err := c.Get(os.Args[2])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		io.Copy(os.Stdout, resp.Body)
	case "send":
		size, _ := strconv.ParseInt(os.Args[3], 10, 64)
		c, err := net.Dial("tcp", os.Args[2])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		buf := make([]byte, 256<<10)
		t0 := time.Now()
		for sent := int64(0); sent < size; sent += int64(len(buf)) {
			if _, err := c.Write(buf); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
		}
		c.(*net.TCPConn).CloseWrite()
		got, _ := io.ReadAll(c)
		if string(got) != strconv.FormatInt(size, 10) {
			fmt.Fprintf(os.Stderr, "sink counted %q\n", got)
			os.Exit(1)
		}
		fmt.Println(time.Since(t0).Seconds())
	case "fsbench":
		mib, _ := strconv.Atoi(os.Args[3])
		n, _ := strconv.Atoi(os.Args[4])
		fsbench(os.Args[2], mib, n)
	case "watch":
		watch(os.Args[2], os.Args[3])
	case "vsock":
		os.Exit(probeVsock(os.Args[2:]))
	case "tcpprobe":
		os.Exit(probeTCP(os.Args[2:]))
	case "sink":
		ln, err := net.Listen("tcp", ":"+os.Args[2])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		for {
			c, err := ln.Accept()
			if err != nil {
				os.Exit(1)
			}
			go func() {
				n, _ := io.Copy(io.Discard, c)
				c.Write([]byte(strconv.FormatInt(n, 10)))
				c.Close()
			}()
		}
	}
}

func watch(dir, port string) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	mask := uint32(unix.IN_MODIFY | unix.IN_ATTRIB | unix.IN_CREATE | unix.IN_DELETE | unix.IN_MOVED_FROM | unix.IN_MOVED_TO | unix.IN_CLOSE_WRITE)
	if _, err := unix.InotifyAddWatch(fd, dir, mask); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var mu sync.Mutex
	cond := sync.NewCond(&mu)
	var events []string
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, err := unix.Read(fd, buf)
			if err != nil {
				os.Exit(1)
			}
			for off := 0; off < n; {
				ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
				name := strings.TrimRight(string(buf[off+unix.SizeofInotifyEvent:off+unix.SizeofInotifyEvent+int(ev.Len)]), "\x00")
				mu.Lock()
				events = append(events, fmt.Sprintf("%s %s", maskName(ev.Mask), name))
				cond.Broadcast()
				mu.Unlock()
				off += unix.SizeofInotifyEvent + int(ev.Len)
			}
		}
	}()
	http.HandleFunc("/count", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprint(w, len(events))
	})
	http.HandleFunc("/wait", func(w http.ResponseWriter, r *http.Request) {
		k, _ := strconv.Atoi(r.URL.Query().Get("n"))
		mu.Lock()
		for len(events) <= k {
			cond.Wait()
		}
		ev := events[k]
		mu.Unlock()
		fmt.Fprint(w, ev)
	})
	fmt.Fprintln(os.Stderr, http.ListenAndServe(":"+port, nil))
	os.Exit(1)
}

func maskName(m uint32) string {
	var names []string
	for _, f := range []struct {
		bit  uint32
		name string
	}{{unix.IN_MODIFY, "MODIFY"}, {unix.IN_ATTRIB, "ATTRIB"}, {unix.IN_CREATE, "CREATE"}, {unix.IN_DELETE, "DELETE"},
		{unix.IN_MOVED_FROM, "MOVED_FROM"}, {unix.IN_MOVED_TO, "MOVED_TO"}, {unix.IN_CLOSE_WRITE, "CLOSE_WRITE"}, {unix.IN_ISDIR, "ISDIR"}} {
		if m&f.bit != 0 {
			names = append(names, f.name)
		}
	}
	return strings.Join(names, "|")
}

func fsbench(dir string, mib, n int) {
	die := func(err error) {
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	p := dir + "/fsbench.dat"
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i)
	}
	t0 := time.Now()
	f, err := os.Create(p)
	die(err)
	for i := 0; i < mib; i++ {
		_, err := f.Write(buf)
		die(err)
	}
	die(f.Sync())
	die(f.Close())
	write := float64(mib) / time.Since(t0).Seconds()
	// Drop the guest's page cache so the read goes to the device (needs --privileged).
	os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0)
	t0 = time.Now()
	f, err = os.Open(p)
	die(err)
	total, err := io.CopyBuffer(io.Discard, f, buf)
	die(err)
	f.Close()
	read := float64(total) / (1 << 20) / time.Since(t0).Seconds()
	os.Remove(p)
	sub := dir + "/fsbench.d"
	die(os.MkdirAll(sub, 0o755))
	t0 = time.Now()
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("%s/f%d", sub, i)
		die(os.WriteFile(name, []byte("x"), 0o644))
		_, err := os.Stat(name)
		die(err)
	}
	files := float64(n) / time.Since(t0).Seconds()
	os.RemoveAll(sub)
	fmt.Printf("%.1f %.1f %.0f\n", write, read, files)
}
