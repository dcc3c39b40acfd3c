package dockerapi

import (
	"context"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func serve(t *testing.T, h http.Handler) *Client {
	sock := filepath.Join(t.TempDir(), "d.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	c := New(sock)
	t.Cleanup(c.Close)
	return c
}

func TestClient(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/_ping", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "OK") })
	mux.HandleFunc("/version", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"Version":"26.1.5","ApiVersion":"1.45","Components":[{"Name":"containerd","Version":"1.7.24"},{"Name":"runc","Version":"1.1.15"}]}`)
	})
	mux.HandleFunc("/containers/json", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("all") != "1" {
			io.WriteString(w, `[]`)
			return
		}
		io.WriteString(w, `[{"Id":"abc","Names":["/web"],"State":"running","Ports":[{"IP":"0.0.0.0","PrivatePort":80,"PublicPort":8080,"Type":"tcp"}]}]`)
	})
	mux.HandleFunc("/events", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"Type":"container","Action":"start","Actor":{"ID":"abc"}}`+"\n")
	})
	mux.HandleFunc("/containers/nope/start", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, `{"message":"No such container: nope"}`)
	})
	c := serve(t, mux)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	v, err := c.Version(ctx)
	if err != nil || v.APIVersion != "1.45" || v.Component("containerd") != "1.7.24" || v.Component("runc") != "1.1.15" || v.Component("x") != "" {
		t.Errorf("version %+v, %v", v, err)
	}
	if list, err := c.Containers(ctx, false); err != nil || len(list) != 0 {
		t.Errorf("running: %v, %v", list, err)
	}
	list, err := c.Containers(ctx, true)
	if err != nil || len(list) != 1 || list[0].Ports[0].PublicPort != 8080 || list[0].Names[0] != "/web" {
		t.Errorf("all: %+v, %v", list, err)
	}
	var evs []Event
	opened := false
	err = c.ContainerEvents(ctx, func() { opened = true }, func(e Event) { evs = append(evs, e) })
	if !opened || len(evs) != 1 || evs[0].Action != "start" || evs[0].Actor.ID != "abc" || err == nil {
		t.Errorf("events %+v opened %v err %v", evs, opened, err)
	}
	_, err = c.Request(ctx, http.MethodPost, "/containers/nope/start", nil)
	if err == nil || err.Error() != "No such container: nope" {
		t.Errorf("error answer: %v", err)
	}
}

func TestUnreachable(t *testing.T) {
	c := New(filepath.Join(t.TempDir(), "none.sock"))
	if err := c.Ping(context.Background()); err == nil || !strings.Contains(err.Error(), "failed to reach the Docker engine") {
		t.Errorf("ping of no engine: %v", err)
	}
}
