//go:build unix

package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The official TypeScript SDK's Streamable HTTP client (e2e/sdk_lb.mjs)
// through the same round-robin proxy in front of two real instances on
// one database: its calls spread over both, the instance running its
// in-flight call is killed with SIGKILL, the call fails with a transport
// error and the same session goes on through the survivor; DELETE ends it.
// Needs Node.js 20+ and npm like TestRealClients (fails, never skips).
func TestHTTPInstancesBehindALoadBalancerSDK(t *testing.T) {
	e2eRequireNode(t)
	root, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	e2eEnsureNodeModules(t, filepath.Join(root, "e2e"))
	cl := newLBCluster(t, 2)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", filepath.Join("e2e", "sdk_lb.mjs"), cl.url, lbAlice)
	cmd.Dir = root
	cmd.Env = e2eHermeticEnv(t)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	w := &e2eLogWriter{t: t}
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	var runErr error
	done := false
	cl.killInflight(t, "slow analysis sdk", func() string {
		select {
		case runErr = <-exited:
			done = true
			w.flush()
			return "the SDK client exited: " + w.all.String()
		default:
			return ""
		}
	})
	if !done {
		runErr = <-exited
	}
	w.flush()
	if runErr != nil {
		t.Fatalf("node e2e/sdk_lb.mjs: %v; its output is logged above", runErr)
	}
	out := w.all.String()
	e2eRequireSummary(t, out, "sdk lb")
	if calls := cl.proxy.backendsOf("tools/call"); len(calls) != 2 {
		t.Fatalf("the SDK's tool calls reached instances %v, want both", calls)
	}
	if !strings.Contains(out, "ok - the call in flight on the killed instance fails with a transport error") {
		t.Fatal("the in-flight call did not fail")
	}
}
