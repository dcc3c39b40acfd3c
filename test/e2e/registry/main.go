// Command registry is a TLS docker registry (the distribution/distribution library, the
// code of the `registry` image) on the host's loopback, for the e2e test of company CA
// certificates: the guest reaches it as host.docker.internal through netproxy, which maps
// to the host's 127.0.0.1. It is a module of its own so that the registry's dependencies
// stay out of berth's.
//
//	registry -cert server.pem -key server-key.pem -dir /tmp/store
//
// It prints the address it listens on as its first line and serves until killed.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/handlers"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
)

func main() {
	cert := flag.String("cert", "", "server certificate (PEM)")
	key := flag.String("key", "", "server key (PEM)")
	dir := flag.String("dir", "", "storage directory")
	addr := flag.String("addr", "127.0.0.1:0", "listen address (loopback only)")
	flag.Parse()
	host, _, err := net.SplitHostPort(*addr)
	if err != nil || !net.ParseIP(host).IsLoopback() {
		log.Fatalf("-addr %q: want a loopback address", *addr)
	}
	cfg := &configuration.Configuration{}
	cfg.Storage = configuration.Storage{"filesystem": configuration.Parameters{"rootdirectory": *dir}}
	cfg.HTTP.Secret = "berth-e2e"
	app := handlers.NewApp(context.Background(), cfg)
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(ln.Addr().String())
	os.Stdout.Sync()
	log.Fatal((&http.Server{Handler: app}).ServeTLS(ln, *cert, *key))
}
