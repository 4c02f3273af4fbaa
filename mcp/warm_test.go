package mcp

import (
	"log/slog"
	"sync"
	"testing"
	"time"
)

// Calls made in sequence run on one goroutine: the pool starts one and
// hands it every call.
func TestWarmPoolSequentialCallsShareOneGoroutine(t *testing.T) {
	p := newWarmPool(slog.New(slog.DiscardHandler), 8)
	defer p.Close(time.Minute)
	n := 0
	for i := 0; i < 100; i++ {
		p.run(func() { n++ })
	}
	p.mu.Lock()
	started, idle := p.started, len(p.idle)
	p.mu.Unlock()
	if n != 100 || started != 1 || idle != 1 {
		t.Fatalf("ran %d, started %d goroutines, %d idle; want 100, 1, 1", n, started, idle)
	}
}

// Concurrent calls never wait for each other: 20 calls that each wait
// until all 20 are running complete (they would deadlock if serialized),
// and afterwards at most maxIdle goroutines are kept.
func TestWarmPoolConcurrentCallsRunTogether(t *testing.T) {
	p := newWarmPool(slog.New(slog.DiscardHandler), 4)
	const n = 20
	var arrived sync.WaitGroup
	arrived.Add(n)
	all := make(chan struct{})
	go func() { arrived.Wait(); close(all) }()
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.run(func() {
				arrived.Done()
				<-all
			})
		}()
	}
	wg.Wait()
	p.mu.Lock()
	started, idle := p.started, len(p.idle)
	p.mu.Unlock()
	if started != n || idle != 4 {
		t.Fatalf("started %d goroutines, %d idle; want %d and 4", started, idle, n)
	}
	p.Close(time.Minute)
	p.wg.Wait() // every goroutine it started has ended
}

// A panic in a handler reaches the caller (where the server's recovery
// turns it into an error), and the pool goes on serving.
func TestWarmPoolPanicReachesCaller(t *testing.T) {
	p := newWarmPool(slog.New(slog.DiscardHandler), 8)
	defer p.Close(time.Minute)
	got := func() (v any) {
		defer func() { v = recover() }()
		p.run(func() { panic("boom") })
		return nil
	}()
	if got != "boom" {
		t.Fatalf("recovered %v, want boom", got)
	}
	ran := false
	p.run(func() { ran = true })
	if !ran {
		t.Fatal("the pool did not run a call after a panic")
	}
}

// After Close a call runs in the caller, and no pool goroutine is left.
func TestWarmPoolAfterClose(t *testing.T) {
	p := newWarmPool(slog.New(slog.DiscardHandler), 8)
	p.run(func() {})
	p.Close(time.Minute)
	p.Close(time.Minute) // twice is fine
	ran := false
	p.run(func() { ran = true })
	p.mu.Lock()
	started := p.started
	p.mu.Unlock()
	if !ran || started != 1 {
		t.Fatalf("ran %v, started %d; want true, 1", ran, started)
	}
	p.wg.Wait()
}
