// go-netpoller: the echo service in Go, one goroutine per connection, written in plain blocking
// style (io.ReadFull, then Write), like blocking-threads. Underneath, Go's runtime makes it
// non-blocking: every socket is O_NONBLOCK and registered with one epoll instance
// (edge-triggered); a read that would block parks the goroutine (not the thread), and the
// scheduler's netpoller (epoll_pwait, from idle threads and from sysmon with a zero timeout)
// makes it runnable again when data arrives. Synchronous code, asynchronous I/O.
//
// netpoll builds this file with the Go toolchain on first use (see go_netpoller.rs) and runs it
// as `netpoll serve --model go-netpoller` would: on the inherited listening socket.
package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

func main() {
	fd := flag.Int("fd", -1, "inherited listening socket")
	payload := flag.Int("payload", 64, "bytes per request and per reply")
	thinkUs := flag.Int("think-us", 0, "CPU work per request, microseconds (spinning)")
	thinkEvery := flag.Int("think-every", 1, "do the think-us work on one request in N")
	diskRead := flag.Int("disk-read", 0, "bytes read from -disk-file per request")
	diskFile := flag.String("disk-file", "", "file for -disk-read (netpoll passes /proc/self/fd/N of an unlinked file)")
	flag.Parse()
	listener, err := net.FileListener(os.NewFile(uintptr(*fd), "listener"))
	if err != nil {
		fail("inherited listener: %v", err)
	}
	// Each connection opens the disk file anew (its own offset, as each thread of the Rust
	// models has), through /proc/self/fd of a descriptor kept open here: the file is unlinked
	// and leaves nothing behind.
	disk := ""
	if *diskRead > 0 {
		f, err := os.Open(*diskFile)
		if err != nil {
			fail("disk file: %v", err)
		}
		// Kept reachable for the process's life: an unreachable *os.File is closed by its
		// finalizer at the next GC, and every later open of /proc/self/fd/N would fail (seen:
		// a reconnect storm under load).
		diskFileKeptOpen = f
		disk = fmt.Sprintf("/proc/self/fd/%d", f.Fd())
	}
	for {
		conn, err := listener.Accept()
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue
			}
			fail("accept: %v", err)
		}
		go serve(conn, *payload, time.Duration(*thinkUs)*time.Microsecond, *thinkEvery, *diskRead, disk)
	}
}

// The file -disk-read reads from, open for the whole run (see main).
var diskFileKeptOpen *os.File

// serve echoes requests on one connection until the client closes it.
func serve(conn net.Conn, payload int, think time.Duration, thinkEvery int, diskRead int, disk string) {
	defer conn.Close()
	buf := make([]byte, payload)
	var file *os.File
	var block []byte
	if diskRead > 0 {
		f, err := os.Open(disk)
		if err != nil {
			fmt.Fprintf(os.Stderr, "go-netpoller: disk file: %v\n", err)
			return
		}
		defer f.Close()
		file, block = f, make([]byte, diskRead)
	}
	for handled := 1; ; handled++ {
		if _, err := io.ReadFull(conn, buf); err != nil {
			return
		}
		if think > 0 && handled%thinkEvery == 0 {
			// Spin rather than sleep: CPU the I/O model cannot overlap.
			for start := time.Now(); time.Since(start) < think; {
			}
		}
		if file != nil {
			for got := 0; got < len(block); {
				n, err := file.Read(block[got:])
				if err == io.EOF {
					file.Seek(0, io.SeekStart)
					continue
				}
				if err != nil {
					return
				}
				got += n
			}
		}
		if _, err := conn.Write(buf); err != nil {
			return
		}
	}
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "go-netpoller: "+format+"\n", args...)
	os.Exit(1)
}
