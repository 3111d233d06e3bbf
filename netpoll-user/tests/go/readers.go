// The --go fixture: N goroutines, each blocked reading its own TCP connection, and the main
// goroutine writing one byte to every connection each PERIOD, K times. While they wait, exactly
// N goroutines are parked on the network (runtime.netpollWaiters = N); the main goroutine
// sleeps on a timer, not on the network. Prints "ready" once every reader waits.
//
// With a fourth argument "blocking", each goroutine reads a pipe with a blocking read(2)
// instead (the syscall package: the runtime cannot poll it), so each of the N*K reads holds
// its thread, and sysmon hands the P to another thread (runtime.retake).
//
// With NETPOLL_SPIN=1, one more goroutine spins on the CPU until the end: with GOMAXPROCS=1
// the scheduler then rarely looks for work, and sysmon polls the network for it (golang/go
// #51651's situation).
//
// With NETPOLL_TRACE=FILE, the program records Go's own runtime/trace into FILE: the peer
// instrument of netpoll's Go view.
//
//	readers N PERIOD K [blocking]    e.g.  readers 50 100ms 20
package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"runtime/trace"
	"strconv"
	"syscall"
	"time"
)

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func main() {
	if len(os.Args) != 4 && len(os.Args) != 5 {
		fmt.Fprintln(os.Stderr, "usage: readers N PERIOD K [blocking]")
		os.Exit(2)
	}
	n, err := strconv.Atoi(os.Args[1])
	must(err)
	period, err := time.ParseDuration(os.Args[2])
	must(err)
	k, err := strconv.Atoi(os.Args[3])
	must(err)
	blocking := len(os.Args) == 5 && os.Args[4] == "blocking"
	if path := os.Getenv("NETPOLL_TRACE"); path != "" {
		f, err := os.Create(path)
		must(err)
		must(trace.Start(f))
		defer func() {
			trace.Stop()
			must(f.Close())
		}()
	}
	if os.Getenv("NETPOLL_SPIN") == "1" {
		go func() {
			for spins := 0; ; spins++ {
				spun = spins
			}
		}()
	}
	writers := make([]io.Writer, 0, n)
	done := make(chan struct{})
	read := func(r io.Reader) {
		buf := make([]byte, 1)
		for j := 0; j < k; j++ {
			_, err := r.Read(buf)
			must(err)
		}
		done <- struct{}{}
	}
	if blocking {
		for i := 0; i < n; i++ {
			var fds [2]int
			must(syscall.Pipe(fds[:]))
			writers = append(writers, os.NewFile(uintptr(fds[1]), "pipe"))
			go read(rawReader(fds[0]))
		}
	} else {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		must(err)
		for i := 0; i < n; i++ {
			c, err := net.Dial("tcp", ln.Addr().String())
			must(err)
			s, err := ln.Accept()
			must(err)
			writers = append(writers, c)
			go read(s)
		}
		must(ln.Close())
	}
	fmt.Println("ready")
	for j := 0; j < k; j++ {
		time.Sleep(period)
		for _, w := range writers {
			_, err := w.Write([]byte{1})
			must(err)
		}
	}
	for i := 0; i < n; i++ {
		<-done
	}
}

// spun is written by the spinning goroutine (so that its loop is not optimised away).
var spun int

// rawReader reads a descriptor with read(2) itself: a blocking system call.
type rawReader int

func (r rawReader) Read(b []byte) (int, error) {
	return syscall.Read(int(r), b)
}
