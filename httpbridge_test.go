package main

// An HTTP client process for the multi-host test: the test binary run in
// bridge mode (TestMain) inside a client namespace of the lab. It reads
// JSON-RPC messages, one a line, on stdin, POSTs each to a server's
// Streamable HTTP endpoint (bearer token, Mcp-Session-Id after
// initialize) and writes every JSON-RPC message of the answers (a JSON
// body or the events of an SSE stream) to stdout, one a line, so
// rpcClient drives a server over the network as it drives one over stdio.
// At the end of stdin it waits for the requests in flight, then exits.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Environment of bridge mode: the endpoint and the bearer token.
const (
	envBridgeURL   = "SESSIONPLANE_TEST_HTTP_BRIDGE"
	envBridgeToken = "SESSIONPLANE_TEST_HTTP_TOKEN"
)

// runHTTPBridge is bridge mode's main; it returns the exit code.
func runHTTPBridge(url, token string, stdin io.Reader, stdout, stderr io.Writer) int {
	hc := &http.Client{Timeout: 2 * time.Minute}
	var (
		wmu     sync.Mutex // one message a line on stdout
		smu     sync.Mutex
		session string
		wg      sync.WaitGroup
	)
	emit := func(msg []byte) {
		msg = bytes.TrimSpace(msg)
		if len(msg) == 0 {
			return
		}
		wmu.Lock()
		defer wmu.Unlock()
		stdout.Write(append(msg, '\n'))
	}
	post := func(line []byte) error {
		req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(line))
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		smu.Lock()
		if session != "" {
			req.Header.Set("Mcp-Session-Id", session)
			req.Header.Set("Mcp-Protocol-Version", "2025-11-25")
		}
		smu.Unlock()
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if id := resp.Header.Get("Mcp-Session-Id"); id != "" {
			smu.Lock()
			session = id
			smu.Unlock()
		}
		if resp.StatusCode == http.StatusAccepted {
			return nil
		}
		if resp.StatusCode != http.StatusOK {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			return fmt.Errorf("HTTP %d: %s", resp.StatusCode, b)
		}
		ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
		if ct != "text/event-stream" {
			b, err := io.ReadAll(resp.Body)
			emit(b)
			return err
		}
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<26)
		var data bytes.Buffer
		for sc.Scan() {
			l := sc.Text()
			switch {
			case strings.HasPrefix(l, "data:"):
				data.WriteString(strings.TrimPrefix(strings.TrimPrefix(l, "data:"), " "))
			case l == "":
				emit(data.Bytes())
				data.Reset()
			}
		}
		emit(data.Bytes())
		return sc.Err()
	}
	sc := bufio.NewScanner(stdin)
	sc.Buffer(make([]byte, 1<<20), 1<<26)
	first := true
	for sc.Scan() {
		line := append([]byte(nil), sc.Bytes()...)
		if first { // initialize first, alone: it opens the session the others name
			first = false
			// The server may still be starting: retry a refused
			// connection for up to 30 s.
			deadline := time.Now().Add(30 * time.Second)
			for {
				err := post(line)
				if err == nil {
					break
				}
				if !errors.Is(err, syscall.ECONNREFUSED) || time.Now().After(deadline) {
					fmt.Fprintln(stderr, "bridge: initialize:", err)
					return 1
				}
				time.Sleep(100 * time.Millisecond)
			}
			continue
		}
		var msg struct {
			ID json.RawMessage `json:"id"`
		}
		_ = json.Unmarshal(line, &msg)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := post(line); err != nil {
				fmt.Fprintf(stderr, "bridge: request %s: %v\n", msg.ID, err)
			}
		}()
	}
	wg.Wait()
	return 0
}

// bridgeMode runs the bridge instead of the tests when the environment asks.
func bridgeMode() (int, bool) {
	url := os.Getenv(envBridgeURL)
	if url == "" {
		return 0, false
	}
	return runHTTPBridge(url, os.Getenv(envBridgeToken), os.Stdin, os.Stdout, os.Stderr), true
}
