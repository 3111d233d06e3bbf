// Go's net/http serving one small file, for the "third-party" experiment: the standard
// library's server, a goroutine per connection on Go's netpoller. Built once with Debian's
// golang-go; started as  go-http ADDR DIR.
package main

import (
	"log"
	"net/http"
	"os"
)

func main() {
	if len(os.Args) != 3 {
		log.Fatal("usage: go-http ADDR DIR")
	}
	log.Fatal(http.ListenAndServe(os.Args[1], http.FileServer(http.Dir(os.Args[2]))))
}
