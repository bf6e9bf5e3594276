// spdystream-peer drives moby/spdystream, the SPDY/3.1 library under kubectl, crictl and
// kubelet, against cri-shim's Python SPDY framer (tests/integration/test_streaming_spdy_spdystream.py).
//
//	spdystream-peer client HOST:PORT   act as client-go's exec client against a server there
//	spdystream-peer capture DIR        run spdystream client and server over a pipe and write the
//	                                   bytes each one sent to DIR/{client,server}.bin
//	                                   (tests/unit/data/spdy: `go run . capture ../unit/data/spdy`)
//
// The client scenario: open error/stdin/stdout/resize streams and a port-forward style stream
// with a two-valued header, wait for each SYN_REPLY, send stdin then half-close it, send a
// resize, ping, read stdout and the error stream to EOF, reset the port-forward stream, GOAWAY.
// It prints one line per check and exits non-zero on the first failure.
package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/moby/spdystream"
)

const timeout = 10 * time.Second

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "FAIL "+format+"\n", args...)
	os.Exit(1)
}

func header(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

func runClient(conn net.Conn) {
	client, err := spdystream.NewConnection(conn, false)
	if err != nil {
		fail("new connection: %v", err)
	}
	go client.Serve(spdystream.NoOpStreamHandler)
	open := func(h http.Header) *spdystream.Stream {
		s, err := client.CreateStream(h, nil, false)
		if err != nil {
			fail("create stream %v: %v", h, err)
		}
		if err := s.WaitTimeout(timeout); err != nil {
			fail("wait for reply %v: %v", h, err)
		}
		fmt.Printf("ok reply %d %v\n", s.Identifier(), h)
		return s
	}
	errStream := open(header("streamtype", "error"))
	stdin := open(header("streamtype", "stdin"))
	stdout := open(header("streamtype", "stdout"))
	resize := open(header("streamtype", "resize"))
	data := open(header("streamtype", "data", "port", "80", "requestid", "0", "x-multi", "a", "x-multi", "b"))

	// Read like client-go does, concurrently: spdystream hands DATA over unbuffered, so an
	// unread stream stalls that frame worker (and any PING reply queued behind it).
	readAll := func(s *spdystream.Stream) <-chan string {
		done := make(chan string, 1)
		go func() {
			var buf bytes.Buffer
			_, _ = io.Copy(&buf, s)
			done <- buf.String()
		}()
		return done
	}
	stdoutDone, errorDone := readAll(stdout), readAll(errStream)

	if _, err := stdin.Write([]byte("echo hello\n")); err != nil {
		fail("write stdin: %v", err)
	}
	if _, err := resize.Write([]byte(`{"Width":80,"Height":24}` + "\n")); err != nil {
		fail("write resize: %v", err)
	}
	rtt, err := client.Ping()
	if err != nil {
		fail("ping: %v", err)
	}
	fmt.Printf("ok ping %v\n", rtt < timeout)
	if err := stdin.Close(); err != nil {
		fail("close stdin: %v", err)
	}
	for name, done := range map[string]<-chan string{"stdout": stdoutDone, "error": errorDone} {
		select {
		case got := <-done:
			fmt.Printf("ok read %s %q\n", name, got)
		case <-time.After(timeout):
			fail("read %s: timed out", name)
		}
	}
	if err := data.Reset(); err != nil {
		fail("reset: %v", err)
	}
	if err := client.Close(); err != nil {
		fail("close: %v", err)
	}
	fmt.Println("ok done")
}

// runServer answers like kubelet's streaming server would, minimally: reply to every stream,
// write "hello\r\n" on stdout and a status on the error stream once stdin has ended.
func runServer(conn net.Conn) {
	server, err := spdystream.NewConnection(conn, true)
	if err != nil {
		fail("new server connection: %v", err)
	}
	var mu sync.Mutex
	streams := map[string]*spdystream.Stream{}
	server.Serve(func(s *spdystream.Stream) {
		if err := s.SendReply(http.Header{}, false); err != nil {
			fail("send reply: %v", err)
		}
		kind := s.Headers().Get("streamtype")
		mu.Lock()
		streams[kind] = s
		mu.Unlock()
		if kind == "resize" {
			go func() { _, _ = io.Copy(io.Discard, s) }()
		}
		if kind == "stdin" {
			go func() {
				_, _ = io.Copy(io.Discard, s)
				mu.Lock()
				out, errs := streams["stdout"], streams["error"]
				mu.Unlock()
				for out == nil || errs == nil {
					time.Sleep(10 * time.Millisecond)
					mu.Lock()
					out, errs = streams["stdout"], streams["error"]
					mu.Unlock()
				}
				_, _ = out.Write([]byte("hello\r\n"))
				_ = out.Close()
				_, _ = errs.Write([]byte(`{"status":"Success"}`))
				_ = errs.Close()
			}()
		}
	})
}

type tap struct {
	net.Conn
	mu  sync.Mutex
	out bytes.Buffer
}

func (t *tap) Write(p []byte) (int, error) {
	t.mu.Lock()
	t.out.Write(p)
	t.mu.Unlock()
	return t.Conn.Write(p)
}

func capture(dir string) {
	clientEnd, serverEnd := net.Pipe()
	clientTap, serverTap := &tap{Conn: clientEnd}, &tap{Conn: serverEnd}
	go runServer(serverTap)
	runClient(clientTap)
	time.Sleep(200 * time.Millisecond) // let the server's last frames out
	for name, t := range map[string]*tap{"client.bin": clientTap, "server.bin": serverTap} {
		t.mu.Lock()
		if err := os.WriteFile(filepath.Join(dir, name), t.out.Bytes(), 0o644); err != nil {
			fail("write %s: %v", name, err)
		}
		t.mu.Unlock()
	}
}

func main() {
	if len(os.Args) != 3 {
		fail("usage: spdystream-peer client HOST:PORT | capture DIR")
	}
	switch os.Args[1] {
	case "client":
		conn, err := net.DialTimeout("tcp", os.Args[2], timeout)
		if err != nil {
			fail("dial: %v", err)
		}
		_ = conn.SetDeadline(time.Now().Add(3 * timeout))
		runClient(conn)
	case "capture":
		capture(os.Args[2])
	default:
		fail("unknown mode %q", os.Args[1])
	}
}
