package server_test

import (
	"net"
	"testing"
	"time"

	"github.com/apimeter/apimeter/server"
)

// TestLimitListener: past n open connections Accept waits, and goes on
// when one closes; closing the listener ends a waiting Accept.
func TestLimitListener(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := server.LimitListener(raw, 2)
	accepted := make(chan net.Conn, 3)
	acceptErr := make(chan error, 1)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				acceptErr <- err
				return
			}
			accepted <- c
		}
	}()
	for i := 0; i < 3; i++ {
		c, err := net.Dial("tcp", raw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	first, second := <-accepted, <-accepted
	defer second.Close()
	select {
	case <-accepted:
		t.Fatal("a third connection was accepted while two were open, limit 2")
	case <-time.After(300 * time.Millisecond):
	}
	first.Close()
	first.Close() // a second Close must not free a second place
	select {
	case c := <-accepted:
		c.Close()
	case <-time.After(20 * time.Second):
		t.Fatal("closing a connection did not let the waiting one in")
	}
	ln.Close()
	select {
	case <-acceptErr:
	case <-time.After(20 * time.Second):
		t.Fatal("Accept did not return after the listener closed")
	}
}
