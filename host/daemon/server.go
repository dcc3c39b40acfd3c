package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/berth-dev/berth/guestagent/proto"
	"github.com/berth-dev/berth/host/api"
)

// apiServer serves the control API. See docs/control-api.md.
func (d *Daemon) apiServer() *http.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, d.Status())
	})
	mux.HandleFunc("GET /v1/events", d.handleEvents)
	mux.HandleFunc("GET /v1/mounts", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, d.mountList())
	})
	mux.HandleFunc("GET /v1/ports", func(w http.ResponseWriter, r *http.Request) {
		ports := []api.PortForward{}
		d.mu.Lock()
		pm := d.ports
		d.mu.Unlock()
		if pm != nil {
			ports = pm.list()
		}
		writeJSON(w, http.StatusOK, ports)
	})
	mux.HandleFunc("POST /v1/stop", d.handleStop)
	mux.HandleFunc("POST /v1/pause", d.handlePause)
	mux.HandleFunc("POST /v1/resume", d.handleResume)
	mux.HandleFunc("POST /v1/exec", d.handleExec)
	mux.HandleFunc("GET /v1/logs", d.handleLogs)
	return &http.Server{Handler: d.idleAPI(mux), ReadHeaderTimeout: 10 * time.Second}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, api.ErrorResponse{Error: err.Error()})
}

func (d *Daemon) handleEvents(w http.ResponseWriter, r *http.Request) {
	ch, cancel := d.subscribe()
	defer cancel()
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	enc := json.NewEncoder(w)
	for {
		select {
		case ev := <-ch:
			if enc.Encode(ev) != nil {
				return
			}
			if flusher != nil {
				flusher.Flush()
			}
		case <-d.vmDone:
			// Drain what was published before the end.
			for {
				select {
				case ev := <-ch:
					enc.Encode(ev)
				default:
					return
				}
			}
		case <-r.Context().Done():
			return
		}
	}
}

func (d *Daemon) handleStop(w http.ResponseWriter, r *http.Request) {
	var req api.StopRequest
	if r.ContentLength != 0 {
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("bad stop request: %w", err))
			return
		}
	}
	if !req.Force {
		if err := d.stopBlockedByHostDisk(); err != nil {
			writeError(w, http.StatusConflict, err)
			return
		}
	}
	d.requestStop(req.Force)
	select {
	case <-d.vmDone:
		writeJSON(w, http.StatusOK, d.Status())
	case <-r.Context().Done():
	}
}

// agentFor returns the agent session if the guest is up.
func (d *Daemon) agentFor(w http.ResponseWriter) *agentClient {
	d.mu.Lock()
	agent := d.agent
	d.mu.Unlock()
	if agent == nil {
		writeError(w, http.StatusServiceUnavailable, fmt.Errorf("instance %q is not running yet", d.inst.Name))
	}
	return agent
}

// handleExec upgrades the connection and bridges it to an agent exec stream; from then on
// the client speaks the exec frames of package proto directly with the agent.
func (d *Daemon) handleExec(w http.ResponseWriter, r *http.Request) {
	var req api.ExecRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("bad exec request: %w", err))
		return
	}
	agent := d.agentFor(w)
	if agent == nil {
		return
	}
	// A session replaced meanwhile (a stalled VM continued) is not an error: the next one
	// takes the command.
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	st, err := d.openOnLive(ctx, agent, proto.Request{Type: proto.TypeExec, Exec: &proto.ExecRequest{
		Argv: req.Argv, Env: req.Env, Dir: req.Dir, TTY: req.TTY, Rows: req.Rows, Cols: req.Cols}})
	cancel()
	if err != nil {
		writeError(w, http.StatusBadGateway, err)
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		st.Close()
		writeError(w, http.StatusInternalServerError, fmt.Errorf("connection cannot be upgraded"))
		return
	}
	conn, buf, err := hj.Hijack()
	if err != nil {
		st.Close()
		return
	}
	defer conn.Close()
	defer st.Close()
	buf.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: berth-exec\r\n\r\n")
	if err := buf.Flush(); err != nil {
		return
	}
	// Bytes the client sent right after its request may already sit in buf.
	go func() {
		if n := buf.Reader.Buffered(); n > 0 {
			b, _ := buf.Reader.Peek(n)
			st.Write(b)
		}
		io.Copy(st, conn)
		st.Close()
	}()
	io.Copy(conn, st)
}

func (d *Daemon) handleLogs(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("name")
	follow := r.URL.Query().Get("follow") != ""
	agent := d.agentFor(w)
	if agent == nil {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	st, err := d.openOnLive(ctx, agent, proto.Request{Type: proto.TypeLogs, Log: name, Follow: follow})
	cancel()
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	defer st.Close()
	go func() { <-r.Context().Done(); st.Close() }()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	b := make([]byte, 32<<10)
	for {
		n, err := st.Read(b)
		if n > 0 {
			if _, werr := w.Write(b[:n]); werr != nil {
				return
			}
			if flusher != nil {
				flusher.Flush()
			}
		}
		if err != nil {
			return
		}
	}
}
