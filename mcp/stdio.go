package mcp

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/sessionplane/sessionplane/runtime/config"
	"github.com/sessionplane/sessionplane/tools"
)

// JSON-RPC error codes this layer answers with.
const (
	codeInvalidRequest = -32600
	codeInvalidParams  = -32602
	codeShuttingDown   = -32000
)

// envelopeBytes is what a request line may hold beyond its tool arguments.
const envelopeBytes = 64 << 10

// ServeStdio serves MCP on in/out until in reaches EOF or ctx ends, then
// drains: the requests already received finish and are answered (for at
// most [mcp] drain_seconds), and only then is the rest cancelled.
//
// mcp-go's StdioServer cancels every in-flight request the moment its
// input ends, so it is fed through a pipe by a reader of our own that
// closes the pipe only after the drain. That reader is also where the
// JSON-RPC rules mcp-go does not enforce on stdio are kept: no request
// other than initialize, ping and server/discover before initialize (a
// 2026-07-28 request, which carries its protocol version, needs none), no
// second request with the id of one still in flight, no integer argument a
// JSON number cannot hold exactly, and no line over [limits] call_bytes.
func (s *Server) ServeStdio(ctx context.Context, in io.Reader, out io.Writer, workers int) error {
	drain, limits := 10*time.Second, config.DefaultLimits()
	if cfg := s.reg.Env().Config; cfg != nil {
		drain = time.Duration(cfg.MCP.DrainSeconds) * time.Second
		limits = cfg.Limits.Effective()
	}
	c := &stdioConn{
		out:      out,
		log:      s.log,
		inflight: map[string]bool{},
		changed:  make(chan struct{}, 1),
		maxLine:  limits.CallBytes + envelopeBytes,
		limits:   limits,
	}

	stdio := server.NewStdioServer(s.srv)
	server.WithWorkerPoolSize(workers)(stdio)
	server.WithQueueSize(workers * 4)(stdio)
	stdio.SetErrorLogger(slog.NewLogLogger(s.log.Handler(), slog.LevelWarn))

	// The requests' context outlives ctx by the drain.
	lctx, lcancel := context.WithCancel(context.WithoutCancel(ctx))
	defer lcancel()
	pr, pw := io.Pipe()
	listenDone := make(chan error, 1)
	go func() {
		err := stdio.Listen(lctx, pr, c)
		pr.CloseWithError(io.ErrClosedPipe) // a feeder still writing gives up
		listenDone <- err
	}()
	feedCtx, stopFeed := context.WithCancel(ctx)
	defer stopFeed()
	feedDone := make(chan error, 1)
	go func() { feedDone <- c.feed(feedCtx, in, pw) }()

	var listenErr error
	listenEnded, fed := false, false
	select {
	case err := <-feedDone:
		fed = true
		if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrClosedPipe) {
			s.log.Warn("stdin read failed; finishing the requests already received", "err", err)
		}
	case <-ctx.Done():
	case listenErr = <-listenDone:
		listenEnded = true
	}
	stopFeed()
	if !listenEnded {
		if n := c.waitIdle(drain); n > 0 {
			s.log.Warn("drain time is up: cancelling the requests still running", "requests", n, "drain_seconds", int(drain/time.Second))
		} else {
			s.log.Debug("stdin drained: every request received was answered")
		}
	}
	lcancel()
	pw.Close()
	if !listenEnded {
		select {
		case listenErr = <-listenDone:
		case <-time.After(5 * time.Second):
			s.log.Warn("the stdio server did not stop within 5 s of its drain")
		}
	}
	if !fed {
		// The feeder may be blocked reading in: unblock it when in allows.
		if d, ok := in.(interface{ SetReadDeadline(time.Time) error }); ok {
			_ = d.SetReadDeadline(time.Now())
		}
		select {
		case <-feedDone:
		case <-time.After(250 * time.Millisecond):
			// A blocking stdin cannot be interrupted; the process exits next.
			s.log.Debug("stdin reader left blocked on its read")
		}
	}
	if listenErr != nil && !errors.Is(listenErr, context.Canceled) && !errors.Is(listenErr, io.EOF) {
		return listenErr
	}
	return nil
}

// stdioConn is one stdio connection's bookkeeping: the requests in flight
// (by id), whether initialize was answered, and the one writer every
// message to the client goes through.
type stdioConn struct {
	out    io.Writer
	outMu  sync.Mutex
	log    *slog.Logger
	limits config.Limits

	mu          sync.Mutex
	inflight    map[string]bool // request ids received and not yet answered
	initialized bool
	initWait    string        // id of the initialize request being answered
	initDone    chan struct{} // closed when it is answered
	changed     chan struct{} // a request was answered

	maxLine int
}

// Write is the client-bound stream: mcp-go writes one message per call.
// A response takes its id out of flight.
func (c *stdioConn) Write(p []byte) (int, error) {
	c.outMu.Lock()
	n, err := c.out.Write(p)
	c.outMu.Unlock()
	if id, ok, isResp := responseID(p); isResp {
		c.answered(idKey(id), ok)
	}
	return n, err
}

// responsePrefix is how mcp-go starts every response it encodes
// (JSONRPCResponse and JSONRPCError put jsonrpc, then id, first).
var responsePrefix = []byte(`{"jsonrpc":"2.0","id":`)

// responseID tells whether p is a JSON-RPC response, with its id and
// whether it carries a result (not an error). mcp-go's own encoding is
// read from its head, without decoding the result (the bulk of a tool
// call's bytes); anything else is decoded whole.
func responseID(p []byte) (id json.RawMessage, ok, isResp bool) {
	if rest, found := bytes.CutPrefix(p, responsePrefix); found {
		if end := idEnd(rest); end > 0 {
			switch after := rest[end:]; {
			case bytes.HasPrefix(after, []byte(`,"result":`)):
				return json.RawMessage(rest[:end]), true, true
			case bytes.HasPrefix(after, []byte(`,"error":`)):
				return json.RawMessage(rest[:end]), false, true
			}
		}
	}
	var m struct {
		ID     json.RawMessage `json:"id"`
		Method string          `json:"method"`
		Result json.RawMessage `json:"result"`
		Error  json.RawMessage `json:"error"`
	}
	if json.Unmarshal(p, &m) == nil && m.Method == "" && len(m.ID) > 0 && (m.Result != nil || m.Error != nil) {
		return m.ID, m.Result != nil, true
	}
	return nil, false, false
}

// idEnd returns the length of the simple id (digits, or a string without
// escapes) at the start of b, or 0 when it is not one.
func idEnd(b []byte) int {
	if len(b) == 0 {
		return 0
	}
	if b[0] == '"' {
		for i := 1; i < len(b); i++ {
			switch c := b[i]; {
			case c == '"':
				return i + 1
			case c == '\\' || c < 0x20:
				return 0
			}
		}
		return 0
	}
	i := 0
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	return i
}

func (c *stdioConn) answered(key string, ok bool) {
	c.mu.Lock()
	delete(c.inflight, key)
	if c.initWait != "" && key == c.initWait {
		c.initialized = c.initialized || ok
		c.initWait = ""
		close(c.initDone)
	}
	c.mu.Unlock()
	select {
	case c.changed <- struct{}{}:
	default:
	}
}

// waitIdle waits up to d for every request received to be answered and
// returns how many are still in flight.
func (c *stdioConn) waitIdle(d time.Duration) int {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		c.mu.Lock()
		n := len(c.inflight)
		c.mu.Unlock()
		if n == 0 {
			return 0
		}
		select {
		case <-c.changed:
		case <-timer.C:
			return n
		}
	}
}

// reply writes a JSON-RPC error response of this layer.
func (c *stdioConn) reply(id json.RawMessage, code int, msg string) {
	if len(id) == 0 {
		id = json.RawMessage("null")
	}
	b, _ := json.Marshal(struct {
		JSONRPC string          `json:"jsonrpc"`
		ID      json.RawMessage `json:"id"`
		Error   struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}{JSONRPC: "2.0", ID: id, Error: struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}{code, msg}})
	c.outMu.Lock()
	defer c.outMu.Unlock()
	if _, err := c.out.Write(append(b, '\n')); err != nil {
		c.log.Debug("error response not written", "err", err)
	}
}

// feed reads in line by line and forwards what mcp-go should serve to w,
// answering itself what breaks the rules above. It returns at EOF, on a
// read or write error, or when ctx ends (then without forwarding more).
func (c *stdioConn) feed(ctx context.Context, in io.Reader, w io.Writer) error {
	r := bufio.NewReaderSize(in, 64<<10)
	for {
		line, over, err := readLine(r, c.maxLine)
		if ctx.Err() != nil {
			if id := requestID(line); id != nil {
				c.reply(id, codeShuttingDown, "the server is shutting down and takes no new requests")
			}
			return ctx.Err()
		}
		if over > 0 {
			c.reply(requestID(line), codeInvalidRequest, fmt.Sprintf("request of %d bytes is over the limit of %d bytes (raise [limits] call_bytes to allow larger tool arguments)", over, c.maxLine))
		} else if len(bytes.TrimSpace(line)) > 0 {
			if ferr := c.forward(ctx, line, w); ferr != nil {
				return ferr
			}
		}
		if err != nil {
			return err
		}
	}
}

// forward applies the connection's rules to one message and passes it on.
func (c *stdioConn) forward(ctx context.Context, line []byte, w io.Writer) error {
	var m struct {
		ID     json.RawMessage `json:"id"`
		Method string          `json:"method"`
		Params json.RawMessage `json:"params"`
	}
	isRequest := json.Unmarshal(line, &m) == nil && m.Method != "" && len(m.ID) > 0 && string(m.ID) != "null"
	var wait chan struct{}
	if isRequest {
		key := idKey(m.ID)
		c.mu.Lock()
		var refuse string
		code := codeInvalidRequest
		switch {
		case !c.initialized && !allowedBeforeInit(m.Method) && !modernRequest(m.Params):
			refuse = fmt.Sprintf("%s received before initialize: send initialize (and wait for its result) first", m.Method)
		case c.inflight[key]:
			refuse = fmt.Sprintf("duplicate request id %s: a request with this id is still in flight; use a new id for every request", m.ID)
		case m.Method == string(mcp.MethodToolsCall):
			if msg := exactArgs(m.Params); msg != "" {
				refuse, code = "invalid params: "+msg, codeInvalidParams
			}
		}
		if refuse == "" {
			c.inflight[key] = true
			if m.Method == string(mcp.MethodInitialize) && c.initWait == "" {
				c.initWait, c.initDone = key, make(chan struct{})
				wait = c.initDone
			}
		}
		c.mu.Unlock()
		if refuse != "" {
			c.reply(m.ID, code, refuse)
			return nil
		}
	}
	if _, err := w.Write(append(bytes.TrimRight(line, "\r\n"), '\n')); err != nil {
		return err
	}
	if wait != nil {
		// What follows initialize is read once it is answered, so a client
		// that pipes its requests right behind it is served in order.
		select {
		case <-wait:
		case <-ctx.Done():
		case <-time.After(30 * time.Second):
		}
	}
	return nil
}

func allowedBeforeInit(method string) bool {
	switch method {
	case string(mcp.MethodInitialize), string(mcp.MethodPing), "server/discover":
		return true
	}
	return false
}

// modernRequest reports whether a request declares protocol version
// 2026-07-28 or later in its _meta: that era has no initialize handshake.
func modernRequest(params json.RawMessage) bool {
	var p struct {
		Meta *mcp.Meta `json:"_meta"`
	}
	if len(params) == 0 || json.Unmarshal(params, &p) != nil || p.Meta == nil {
		return false
	}
	return mcp.IsModernProtocol(p.Meta.ProtocolVersion())
}

// exactArgs checks a tools/call's arguments as sent for integers a JSON
// number cannot hold exactly (they would be rounded before any check).
func exactArgs(params json.RawMessage) string {
	if !tools.MayHoldInexact(params) { // nothing in params can be refused: no need to decode them
		return ""
	}
	var p struct {
		Arguments json.RawMessage `json:"arguments"`
	}
	if json.Unmarshal(params, &p) != nil || len(p.Arguments) == 0 {
		return ""
	}
	return tools.ExactIntegers(p.Arguments)
}

// idKey is a request id as mcp-go echoes it: numbers pass through a
// float64, so 1 and 1.0 are the same id.
func idKey(id json.RawMessage) string {
	if simpleID(id) {
		return string(id) // what the round trip below would give
	}
	var v any
	if json.Unmarshal(id, &v) != nil {
		return string(id)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// simpleID reports whether id reads back unchanged through any and
// json.Marshal: an integer of at most 15 digits without a leading zero
// (exact in a float64), or a string of printable ASCII that Marshal does
// not escape.
func simpleID(id []byte) bool {
	n := len(id)
	switch {
	case n == 0:
		return false
	case id[0] == '"':
		if n < 2 || id[n-1] != '"' {
			return false
		}
		for _, c := range id[1 : n-1] {
			if c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
				return false
			}
		}
		return true
	case n > 15 || (id[0] == '0' && n > 1):
		return false
	}
	for _, c := range id {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// readLine reads one line of at most max bytes. A longer line is consumed
// to its end without being kept: over is then its length (and line holds
// its first bytes, enough to find its id).
func readLine(r *bufio.Reader, max int) (line []byte, over int, err error) {
	for {
		frag, e := r.ReadSlice('\n')
		if over == 0 && len(line)+len(frag) <= max {
			line = append(line, frag...)
		} else {
			if over == 0 {
				over = len(line)
			}
			over += len(frag)
		}
		if !errors.Is(e, bufio.ErrBufferFull) {
			if over > 0 && len(line) > envelopeBytes {
				line = line[:envelopeBytes]
			}
			return line, over, e
		}
	}
}

// requestID finds the id of a (possibly cut) request line: the value of
// the top-level "id" key, read token by token so that a line cut short
// still gives the id when it comes before the parameters.
func requestID(line []byte) json.RawMessage {
	if len(line) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(line))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil
	}
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			return nil
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil
		}
		if k == "id" {
			if string(v) == "null" {
				return nil
			}
			return v
		}
	}
	return nil
}
