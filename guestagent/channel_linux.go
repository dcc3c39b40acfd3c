package guestagent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/mdlayher/vsock"

	"github.com/berth-dev/berth/guestagent/proto"
)

// RunServe is the agent's main loop after boot: it starts the engine and serves the host
// over every channel the VM has (vsock and/or the virtio-serial port) until SIGTERM.
func RunServe(log *slog.Logger) error {
	boot, err := ReadBootInfo(BootInfoPath)
	if err != nil {
		log.Warn("no boot info; serving anyway", "err", err)
	}
	eng := DefaultEngine(log.With("component", "engine"), proto.HostNATIP)
	policy := ListenersPublic
	cl, _ := ReadCmdline()
	if cl[proto.FlagListeners] != "" {
		policy = cl[proto.FlagListeners]
	}
	nap := &EngineNap{
		Signal: eng.signalDaemons,
		Swarm: func(ctx context.Context) (bool, error) {
			c := eng.client()
			defer c.Close()
			return c.InSwarm(ctx)
		},
		Log: log.With("component", "nap"),
	}
	ports := &PortWatcher{DockerSocket: eng.Socket, Listeners: policy, Log: log.With("component", "ports"), Hold: nap.Hold, Napping: nap.Napping}
	powerOff := PowerOff
	if OnWSL() {
		// All WSL distributions share one VM: a shutdown ends this agent (and with it the
		// wsl.exe process the host watches), never the VM.
		powerOff = func() { os.Exit(0) }
	}
	setup := &EngineSetup{Engine: eng, Log: log.With("component", "engine"), Paths: DefaultEnginePaths(),
		ClusterMember: cl[proto.FlagCluster] != "", WSL: OnWSL()}
	srv := NewServer(ServeOptions{
		Ports:    ports,
		Engine:   eng,
		Logs:     map[string]string{"agent": AgentLogPath, "engine": eng.LogPath},
		PowerOff: powerOff,
		Setup:    setup,
		Nap:      nap,
	}, boot, log)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The engine starts once the host's configuration (proxy, CAs, daemon.json) is in place.
	go setup.Run(ctx, proto.EngineConfigWait)
	go ports.Run(ctx)
	engineEvents, unsubscribe := eng.Subscribe()
	defer unsubscribe()
	running, unfollow := ports.running.subscribe()
	defer unfollow()
	go nap.Run(ctx, engineEvents, running)
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sigc
		srv.Shutdown()
		cancel()
	}()

	served := 0
	if ln, err := vsock.Listen(proto.VsockPort, nil); err == nil {
		served++
		log.Info("listening on vsock", "port", proto.VsockPort)
		go func() {
			if err := srv.ServeListener(ctx, ln, FromHost); err != nil && ctx.Err() == nil {
				log.Error("vsock listener failed", "err", err)
			}
		}()
	} else {
		log.Info("no vsock", "err", err)
	}
	if dev, err := FindSerialPort("/sys/class/virtio-ports", proto.SerialName); err == nil {
		served++
		log.Info("serving virtio-serial port", "dev", dev)
		go serveSerial(ctx, srv, dev, log)
	} else {
		log.Info("no virtio-serial agent port", "err", err)
	}
	if served == 0 {
		return errors.New("no agent channel: neither vsock nor the virtio-serial port is present")
	}
	<-ctx.Done()
	return nil
}

// serveSerial serves the virtio-serial port. The port is one byte stream for the VM's life;
// when the host side disconnects, reads return EOF until it reconnects, so the session is
// restarted after a short pause.
func serveSerial(ctx context.Context, srv *Server, dev string, log *slog.Logger) {
	for ctx.Err() == nil {
		f, err := os.OpenFile(dev, os.O_RDWR, 0)
		if err != nil {
			log.Error("failed to open agent port", "dev", dev, "err", err)
			time.Sleep(time.Second)
			continue
		}
		err = srv.ServeConn(ctx, f)
		f.Close()
		if ctx.Err() == nil {
			log.Debug("serial session ended", "err", err)
			time.Sleep(200 * time.Millisecond)
		}
	}
}

// FindSerialPort returns /dev/<port> for the virtio-serial port named name. Without udev
// there are no /dev/virtio-ports/ links, so the name is read from sysfs.
func FindSerialPort(sysDir, name string) (string, error) {
	entries, err := os.ReadDir(sysDir)
	if err != nil {
		return "", err
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(sysDir, e.Name(), "name"))
		if err == nil && strings.TrimSpace(string(b)) == name {
			return "/dev/" + e.Name(), nil
		}
	}
	return "", fmt.Errorf("no virtio-serial port named %q under %s", name, sysDir)
}

// OnWSL reports whether the agent runs in a WSL2 distribution rather than its own VM.
func OnWSL() bool {
	if os.Getenv("WSL_DISTRO_NAME") != "" {
		return true
	}
	b, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return strings.Contains(strings.ToLower(string(b)), "microsoft")
}
