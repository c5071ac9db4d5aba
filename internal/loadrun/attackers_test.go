package loadrun

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"testing"
)

// TestSlowFloodSeesTheCutWhenItComes: the slow-client flood must time a
// server's cut when it arrives, not at its next write. A listener answers
// each slow client as soon as the request's headers are in and then keeps
// reading: the flood must record the cut, with its answer, without having
// written another byte. (The flood that found a client "held 36.3 s
// against a 30 s read timeout" looked only after each write, every 2 s,
// with a 10 ms read deadline that a loaded machine let expire before the
// read: each miss added 2 s.)
func TestSlowFloodSeesTheCutWhenItComes(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	extra := make(chan int, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		var first [1]byte
		io.ReadFull(req.Body, first[:]) // the body's first byte, "["
		io.WriteString(c, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
		c.(*net.TCPConn).CloseWrite()
		n, _ := io.Copy(io.Discard, br) // what the client still writes, until it closes
		extra <- int(n)
	}()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f := &slowFlood{addr: ln.Addr().String(), appID: "app"}
	f.one(ctx)
	if f.cut.Load() != 1 || f.answered.Load() != 1 || len(f.held) != 1 {
		t.Fatalf("cut %d, answered %d, held %v; want one cut with its answer", f.cut.Load(), f.answered.Load(), f.held)
	}
	if n := <-extra; n != 0 {
		t.Errorf("the flood wrote %d more bytes after the server's answer before it saw it; want it seen at once", n)
	}
}
