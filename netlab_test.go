package main

// A network lab for multi-host tests: Linux network namespaces joined by
// veth pairs to a bridge in a switch namespace, with addresses in a private
// /24 chosen per run. Only the namespaces made here carry these addresses,
// and all traffic stays between them. Needs root and iproute2; without them
// the test skips, except under CI=true, where it fails.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// netLab is a set of namespaces, one per node, on one bridged /24.
type netLab struct {
	t      *testing.T
	prefix string            // sp-<hex>: every namespace name starts with it
	subnet string            // "10.a.b": the /24 of this lab
	ns     map[string]string // node → namespace name
	addr   map[string]string // node → address
}

// skipOrFail skips the test, or fails it under CI=true (where the lab must
// run).
func skipOrFail(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s (CI=true: this test must run in CI)", msg)
	}
	t.Skip(msg)
}

// runIP runs ip with args, bounded to 20 s.
func runIP(args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// newNetLab makes one namespace per node plus a switch, each node's eth0
// on the switch's bridge with address <subnet>.<i+1>. Everything is
// removed when the test ends (namespaces last: processes are stopped by
// cleanups registered later, which run first).
func newNetLab(t *testing.T, nodes ...string) *netLab {
	t.Helper()
	if os.Geteuid() != 0 {
		skipOrFail(t, "multi-host test: network namespaces need root (running as uid %d)", os.Geteuid())
	}
	if _, err := exec.LookPath("ip"); err != nil {
		skipOrFail(t, "multi-host test: the ip command (iproute2) is not installed: %v", err)
	}
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	// 10.200.0.0–10.249.255.0: a /24 per run, inside namespaces only.
	n, _ := rand.Int(rand.Reader, big.NewInt(50))
	l := &netLab{t: t, prefix: "sp-" + hex.EncodeToString(b[:]), subnet: fmt.Sprintf("10.%d.%d", 200+n.Int64(), b[2]),
		ns: map[string]string{}, addr: map[string]string{}}
	var made []string
	t.Cleanup(func() {
		for _, ns := range made {
			if err := runIP("netns", "del", ns); err != nil {
				t.Logf("cleanup: %v", err)
			}
		}
	})
	sw := l.prefix + "-sw"
	if err := runIP("netns", "add", sw); err != nil {
		skipOrFail(t, "multi-host test: cannot make a network namespace: %v", err)
	}
	made = append(made, sw)
	must := func(args ...string) {
		t.Helper()
		if err := runIP(args...); err != nil {
			t.Fatal(err)
		}
	}
	must("-n", sw, "link", "add", "name", "br0", "type", "bridge")
	must("-n", sw, "link", "set", "br0", "up")
	for i, node := range nodes {
		ns := l.prefix + "-" + node
		must("netns", "add", ns)
		made = append(made, ns)
		l.ns[node], l.addr[node] = ns, fmt.Sprintf("%s.%d", l.subnet, i+1)
		port := fmt.Sprintf("p%d", i) // the switch's end of the node's cable
		must("-n", ns, "link", "set", "lo", "up")
		must("-n", sw, "link", "add", "name", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
		must("-n", sw, "link", "set", port, "master", "br0", "up")
		must("-n", ns, "addr", "add", l.addr[node]+"/24", "dev", "eth0")
		must("-n", ns, "link", "set", "eth0", "up")
	}
	t.Logf("network lab %s: %s.0/24, nodes %v", l.prefix, l.subnet, l.addr)
	return l
}

// command runs argv inside node's namespace (ip netns exec replaces itself
// with argv, so the process is argv's own).
func (l *netLab) command(node string, argv ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", l.ns[node]}, argv...)...)
}

// pgServer is a PostgreSQL server of the lab, listening on its node's
// address and on a Unix socket in its directory (for the test itself,
// which lives outside the lab's namespaces).
type pgServer struct {
	dir     string
	cmd     *exec.Cmd
	done    chan error
	log     *bytes.Buffer
	hostURL string // postgres://…@<node address>:5432/sp, for the lab's hosts
	testURL string // the same database through the Unix socket, for the test
}

// postgresBin is the bin directory of the newest PostgreSQL installed in
// Debian's layout, "" when none is.
func postgresBin() string {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool {
		vi, vj := filepath.Base(filepath.Dir(dirs[i])), filepath.Base(filepath.Dir(dirs[j]))
		if len(vi) != len(vj) {
			return len(vi) < len(vj)
		}
		return vi < vj
	})
	for i := len(dirs) - 1; i >= 0; i-- {
		if _, err := os.Stat(filepath.Join(dirs[i], "initdb")); err == nil {
			return dirs[i]
		}
	}
	return ""
}

// startPostgres initializes a cluster (as user postgres: PostgreSQL
// refuses root) and starts it in node's namespace, with database sp.
func (l *netLab) startPostgres(node string) *pgServer {
	t := l.t
	t.Helper()
	bin := postgresBin()
	if bin == "" {
		t.Fatal("multi-host test: PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): apt-get install postgresql")
	}
	pgUser, err := user.Lookup("postgres")
	if err != nil {
		t.Fatalf("multi-host test: no postgres user (the postgresql package makes it): %v", err)
	}
	dir, err := os.MkdirTemp("", "sp-multihost-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	var uid, gid int
	fmt.Sscan(pgUser.Uid, &uid)
	fmt.Sscan(pgUser.Gid, &gid)
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	asPostgres := []string{"setpriv", "--reuid=" + pgUser.Uid, "--regid=" + pgUser.Gid, "--clear-groups", "--"}
	initdb := exec.CommandContext(ctx, asPostgres[0], append(asPostgres[1:], filepath.Join(bin, "initdb"), "-D", data,
		"--auth=trust", "-U", "postgres", "-E", "UTF8", "--no-sync")...)
	if out, err := initdb.CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	hba, err := os.OpenFile(filepath.Join(data, "pg_hba.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(hba, "host all all %s.0/24 trust\n", l.subnet)
	hba.Close()
	addr := l.addr[node]
	s := &pgServer{dir: dir, done: make(chan error, 1), log: &bytes.Buffer{},
		hostURL: fmt.Sprintf("postgres://postgres@%s:5432/sp?sslmode=disable", addr),
		testURL: fmt.Sprintf("postgres://postgres@/sp?host=%s&port=5432&sslmode=disable", dir)}
	s.cmd = l.command(node, append(asPostgres, filepath.Join(bin, "postgres"), "-D", data,
		"-c", "listen_addresses="+addr, "-c", "port=5432", "-c", "unix_socket_directories="+dir,
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off", "-c", "max_connections=200")...)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.done <- s.cmd.Wait() }()
	t.Cleanup(func() {
		s.cmd.Process.Signal(os.Interrupt) // fast shutdown
		select {
		case <-s.done:
		case <-time.After(15 * time.Second):
			s.cmd.Process.Kill()
			<-s.done
		}
	})
	// Ready when the socket takes a connection (bounded: 60 s).
	admin := fmt.Sprintf("postgres://postgres@/postgres?host=%s&port=5432&sslmode=disable", dir)
	deadline := time.Now().Add(60 * time.Second)
	for {
		cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
		conn, err := pgx.Connect(cctx, admin)
		if err == nil {
			_, err = conn.Exec(cctx, "CREATE DATABASE sp")
			conn.Close(cctx)
			ccancel()
			if err != nil {
				t.Fatalf("create database: %v", err)
			}
			break
		}
		ccancel()
		select {
		case err := <-s.done:
			t.Fatalf("postgres exited: %v\n%s", err, s.log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("postgres not ready after 60 s: %v\n%s", err, s.log)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("postgres %s in %s (data %s)", filepath.Base(filepath.Dir(bin)), l.ns[node], data)
	return s
}

// startHost starts the server binary over stdio inside node's namespace
// as host id hostID; it is killed when the test ends.
func (l *netLab) startHost(node, hostID string, args ...string) *stdioProc {
	t := l.t
	t.Helper()
	cmd := l.command(node, append([]string{buildBinary(t)}, args...)...)
	cmd.Env = append(os.Environ(), "SESSIONPLANE_CONFIG=", "XDG_CONFIG_HOME="+t.TempDir(), "SESSIONPLANE_HOST_ID="+hostID, "SP_MH_TOKEN="+mhToken)
	p := startProc(t, cmd)
	logOnFailure(t, "host "+hostID+" ("+node+")", p)
	return p
}

// logOnFailure logs the end of p's stderr when the test has failed (the
// process is killed first; its log is read once it was reaped).
func logOnFailure(t *testing.T, name string, p *stdioProc) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		p.cmd.Process.Kill()
		select {
		case <-p.exited:
		case <-time.After(10 * time.Second):
			t.Logf("%s: not reaped 10 s after SIGKILL; its log is not read", name)
			return
		}
		s := p.stderr.String()
		if len(s) > 8000 {
			s = "…" + s[len(s)-8000:]
		}
		t.Logf("%s stderr:\n%s", name, s)
	})
}
