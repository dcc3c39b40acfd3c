// Command berth-agent runs inside the berth VM: as PID 1 it sets the system up and
// supervises the serve process, which runs the Docker engine and answers the host.
package main

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/berth-dev/berth/guestagent"
)

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if os.Getpid() == 1 {
		guestagent.Init(log) // never returns
	}
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "serve":
			if err := guestagent.RunServe(log); err != nil {
				fmt.Fprintln(os.Stderr, "berth-agent:", err)
				os.Exit(1)
			}
			return
		case "version":
			fmt.Println(guestagent.Version)
			return
		}
	}
	fmt.Fprintln(os.Stderr, "usage: berth-agent serve | version  (as PID 1 it boots the VM)")
	os.Exit(2)
}
