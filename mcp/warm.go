package mcp

import (
	"log/slog"
	"sync"
	"time"
)

// warmPool runs tool handlers on a few long-lived goroutines, the one that
// became idle last first.
//
// mcp-go hands each tool call to one of its stdio workers (64 by default)
// in turn, so a given worker runs one call in 64, and the garbage collector
// has shrunk its stack in between. A tool's store read runs the SQLite
// engine, whose frames are deep: the worker's stack was grown again (and
// copied) on nearly every call, a tenth of a read-only call's CPU
// (runtime.copystack in BenchmarkStdioCalls' profile). Run on the most
// recently used goroutine instead, the stack is still grown; the GC shrinks
// an idle one at most once per cycle.
//
// The handoff is a channel send to a parked goroutine and a wait for it:
// the Go scheduler runs it next on the same processor. Close stops the idle
// goroutines and waits (bounded) for busy ones.
type warmPool struct {
	log     *slog.Logger
	maxIdle int

	mu      sync.Mutex
	idle    []chan func() // LIFO: the last one is the warmest
	closed  bool
	wg      sync.WaitGroup
	started int // goroutines started so far (tests)
}

func newWarmPool(log *slog.Logger, maxIdle int) *warmPool {
	return &warmPool{log: log, maxIdle: maxIdle}
}

// run runs f on a warm goroutine and returns when f has returned. A panic
// in f is raised again in the caller, where the server's recovery handles
// it. After Close, f runs in the caller.
func (p *warmPool) run(f func()) {
	jobs := p.get()
	if jobs == nil {
		f()
		return
	}
	var panicked any
	done := make(chan struct{})
	jobs <- func() {
		defer close(done)
		defer func() { panicked = recover() }()
		f()
	}
	<-done
	p.put(jobs)
	if panicked != nil {
		panic(panicked)
	}
}

// get takes the warmest idle goroutine or starts one; nil after Close.
func (p *warmPool) get() chan func() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	if n := len(p.idle); n > 0 {
		jobs := p.idle[n-1]
		p.idle = p.idle[:n-1]
		return jobs
	}
	jobs := make(chan func())
	p.started++
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for f := range jobs {
			f()
		}
	}()
	return jobs
}

// put returns an idle goroutine to the pool, or ends it when the pool is
// closed or holds maxIdle already.
func (p *warmPool) put(jobs chan func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || len(p.idle) >= p.maxIdle {
		close(jobs)
		return
	}
	p.idle = append(p.idle, jobs)
}

// Close ends the idle goroutines and waits up to wait for those still
// running a handler (each ends when its handler returns). It may be called
// more than once.
func (p *warmPool) Close(wait time.Duration) {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		for _, jobs := range p.idle {
			close(jobs)
		}
		p.idle = nil
	}
	p.mu.Unlock()
	done := make(chan struct{})
	go func() {
		p.wg.Wait()
		close(done)
	}()
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		p.log.Warn("tool handlers still running at close", "waited", wait)
	}
}
