// The --go fixture: N goroutines, each blocked reading its own TCP connection, and the main
// goroutine writing one byte to every connection each PERIOD, K times. While they wait, exactly
// N goroutines are parked on the network (runtime.netpollWaiters = N); the main goroutine
// sleeps on a timer, not on the network. Prints "ready" once every reader waits.
//
//	readers N PERIOD K    e.g.  readers 50 100ms 20
package main

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"time"
)

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: readers N PERIOD K")
		os.Exit(2)
	}
	n, err := strconv.Atoi(os.Args[1])
	must(err)
	period, err := time.ParseDuration(os.Args[2])
	must(err)
	k, err := strconv.Atoi(os.Args[3])
	must(err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(err)
	writers := make([]net.Conn, 0, n)
	done := make(chan struct{})
	for i := 0; i < n; i++ {
		c, err := net.Dial("tcp", ln.Addr().String())
		must(err)
		s, err := ln.Accept()
		must(err)
		writers = append(writers, c)
		go func(s net.Conn) {
			buf := make([]byte, 1)
			for j := 0; j < k; j++ {
				_, err := s.Read(buf)
				must(err)
			}
			done <- struct{}{}
		}(s)
	}
	must(ln.Close())
	fmt.Println("ready")
	for j := 0; j < k; j++ {
		time.Sleep(period)
		for _, c := range writers {
			_, err := c.Write([]byte{1})
			must(err)
		}
	}
	for i := 0; i < n; i++ {
		<-done
	}
}
