// Command testsrv is the end-to-end suite's server and client inside containers and
// network namespaces: a static binary with no dependencies, since nothing can be pulled.
//
//	testsrv http PORT...        answer "hello from PORT" on each port
//	testsrv udp PORT            echo UDP datagrams
//	testsrv get URL             print the body, exit 1 on failure (2 s timeout)
//	testsrv sink PORT           count TCP bytes received, reply with the count when the peer half-closes
//	testsrv send ADDR BYTES     send BYTES to a sink, print the seconds it took
package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"
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
