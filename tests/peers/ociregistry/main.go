// ociregistry serves go-containerregistry's in-memory registry (pkg/registry)
// with the OCI 1.1 referrers API on 127.0.0.1. It prints the port it listens
// on as the first line of stdout, then serves until killed.
//
// A test peer only (tests/harness/src/oci_registry.rs builds and starts it).
package main

import (
	"fmt"
	"log"
	"net"
	"net/http"
	"os"

	"github.com/google/go-containerregistry/pkg/registry"
)

func main() {
	addr := "127.0.0.1:0"
	if len(os.Args) > 1 {
		addr = os.Args[1]
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		log.Fatalf("listen %s: %v", addr, err)
	}
	fmt.Println(l.Addr().(*net.TCPAddr).Port)
	h := registry.New(
		registry.WithReferrersSupport(true),
		registry.Logger(log.New(os.Stderr, "ociregistry: ", log.LstdFlags)),
	)
	log.Fatal(http.Serve(l, h))
}
