// Go's net/http serving one small file, for the "third-party" experiment and the overhead
// benchmark: the standard library's server, a goroutine per connection on Go's netpoller. Built
// once with Debian's golang-go; started as  go-http ADDR DIR.  It also serves Go's own profiles
// under /debug/pprof/ (net/http/pprof): the overhead benchmark collects a runtime/trace of the
// same window through /debug/pprof/trace?seconds=N, the peer of netpoll's --go.
package main

import (
	"log"
	"net/http"
	_ "net/http/pprof"
	"os"
)

func main() {
	if len(os.Args) != 3 {
		log.Fatal("usage: go-http ADDR DIR")
	}
	mux := http.NewServeMux()
	mux.Handle("/", http.FileServer(http.Dir(os.Args[2])))
	mux.Handle("/debug/pprof/", http.DefaultServeMux)
	log.Fatal(http.ListenAndServe(os.Args[1], mux))
}
