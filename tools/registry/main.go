// Command registry is the Docker registry berth runs in the guest as registry.local (the
// distribution/distribution library, the code of the `registry` image, at the version
// tools/versions.env pins): TLS only, filesystem storage, nothing else. The guest agent
// supervises it like dockerd (docs/cluster.md, "The local registry"). The e2e suite also
// runs it on the host's loopback as a company registry with its own CA. It is a module of
// its own so that the registry's dependencies stay out of berth's.
//
//	registry -cert server.pem -key server-key.pem -dir /var/lib/registry [-addr :5000]
//
// It prints the address it listens on as its first line and serves until killed.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/handlers"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
)

// version is set at build time (tools/build.sh) to the distribution release.
var version = "unknown"

func main() {
	cert := flag.String("cert", "", "server certificate (PEM)")
	key := flag.String("key", "", "server key (PEM)")
	dir := flag.String("dir", "", "storage directory")
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	showVersion := flag.Bool("version", false, "print the distribution release and exit")
	flag.Parse()
	if *showVersion {
		fmt.Println(version)
		return
	}
	if *cert == "" || *key == "" || *dir == "" {
		log.Fatal("-cert, -key and -dir are required")
	}
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		log.Fatal(err)
	}
	// The secret signs upload state between requests of one upload; a fresh one per start
	// only ends uploads that were in flight across a restart.
	secret := make([]byte, 32)
	rand.Read(secret)
	// Parsed from YAML so that every default the `registry` image has applies (an empty
	// catalog and tag list otherwise: their limits would be 0).
	yml := fmt.Sprintf("version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: %q\nhttp:\n  secret: %q\n",
		*dir, hex.EncodeToString(secret))
	cfg, err := configuration.Parse(strings.NewReader(yml))
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer cancel()
	app := handlers.NewApp(ctx, cfg)
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(ln.Addr().String())
	os.Stdout.Sync()
	srv := &http.Server{Handler: app, ReadHeaderTimeout: 30 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		srv.Shutdown(sctx)
	}()
	if err := srv.ServeTLS(ln, *cert, *key); err != nil && err != http.ErrServerClosed {
		log.Fatal(err)
	}
}
