package mcp

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sessionplane/sessionplane/policy"
	"github.com/sessionplane/sessionplane/runtime/provider"
	"github.com/sessionplane/sessionplane/runtime/store"
)

// replyProvider answers the latest user message of the conversation, so
// several turns on one session each get their own answer.
type replyProvider struct{}

func (replyProvider) Name() string { return "script" }

func (replyProvider) Complete(ctx context.Context, req provider.Request) (*provider.Response, error) {
	last, first := "", ""
	for _, m := range req.Messages {
		if m.Role == provider.RoleUser {
			if first == "" {
				first = m.Text
			}
			last = m.Text
		}
	}
	switch {
	case strings.Contains(last, "slow"):
		<-ctx.Done()
		return nil, ctx.Err()
	case strings.Contains(last, "ping"):
		return &provider.Response{Text: "pong 1"}, nil
	case strings.Contains(last, "pong"):
		return &provider.Response{Text: "REPLY_SKIP"}, nil
	case strings.Contains(last, "quiet"):
		return &provider.Response{Text: "ANNOUNCE_SKIP"}, nil
	case strings.Contains(last, "what did I ask"):
		return &provider.Response{Text: "you said: " + first}, nil
	case strings.Contains(last, "remember"):
		return &provider.Response{Text: "noted"}, nil
	}
	return &provider.Response{Text: "hello back"}, nil
}

func newSendFixture(t *testing.T, extra string) *fixture {
	t.Helper()
	return newFixtureFull(t, fmt.Sprintf(spawnConfig, "")+extra, "2025-11-25", map[string]provider.Provider{"script": replyProvider{}})
}

type sendOut struct {
	Status  string `json:"status"`
	RunID   string `json:"runId"`
	Key     string `json:"key"`
	Reply   string `json:"reply"`
	Created bool   `json:"created"`
	Queued  bool   `json:"queued"`
	Rule    string `json:"rule"`
}

func (f *fixture) send(args map[string]any) (sendOut, *mcp_result) {
	f.t.Helper()
	var out sendOut
	res := f.call("sessions_send", args, &out)
	return out, &mcp_result{text: text(res), isError: res.IsError}
}

type mcp_result struct {
	text    string
	isError bool
}

func TestSendWaitCreateAndContext(t *testing.T) {
	f := newSendFixture(t, "")
	out, res := f.send(map[string]any{"key": "agent:researcher:specialist", "message": "hello", "context": "coordinator"})
	if out.Status != "ok" || out.Reply != "hello back" || !out.Created {
		t.Fatalf("send: %+v %s", out, res.text)
	}
	msgs, _ := f.st.Transcript(context.Background(), "agent:researcher:specialist")
	if len(msgs) != 2 || msgs[0].Content.Text != "[From: coordinator]\n\nhello" || msgs[0].Trust != store.TrustInterSession {
		t.Fatalf("target transcript: %+v", msgs)
	}
	// The reply came back in the result: its announce is not delivered again.
	if n := countAnnounces(f.call("sessions_list", nil, nil)); n != 0 {
		t.Fatalf("waited reply announced again (%d)", n)
	}
	_, res = f.send(map[string]any{"key": "nonsense", "message": "x"})
	if !res.isError || !strings.Contains(res.text, "agent:<agentId>:<name>") {
		t.Fatalf("bad key: %s", res.text)
	}
	_, res = f.send(map[string]any{"label": "nobody", "message": "x"})
	if !res.isError || !strings.Contains(res.text, "label") {
		t.Fatalf("bad label: %s", res.text)
	}
}

func TestSendTimeoutFireAndForgetAndQueue(t *testing.T) {
	f := newSendFixture(t, "")
	slow, _ := f.send(map[string]any{"key": "agent:main:worker", "message": "slow job", "timeoutSeconds": 1})
	if slow.Status != "timeout" || slow.RunID == "" {
		t.Fatalf("timeout: %+v", slow)
	}
	// A second message queues behind the running turn (FIFO per session).
	q, _ := f.send(map[string]any{"key": "agent:main:worker", "message": "hello again", "timeoutSeconds": 0})
	if q.Status != "accepted" || !q.Queued {
		t.Fatalf("queued send: %+v", q)
	}
	if st := f.runState(q.RunID); st != "queued" {
		t.Fatalf("second turn %s while the first runs", st)
	}
	f.srv.Runs().Kill(context.Background(), slow.RunID, "test", false)
	run, err := f.srv.Runs().Wait(context.Background(), q.RunID, 20*time.Second)
	if err != nil || run.State != "ok" || run.ResultText != "hello back" {
		t.Fatalf("queued turn after the first ended: %+v %v", run, err)
	}
	// Fire and forget: the reply is announced to the sender.
	waitFor(t, "the announce of the fire-and-forget send", func() bool {
		a, err := f.st.GetAnnounce(context.Background(), q.RunID)
		return err == nil && a.RequesterKey == "agent:main:main"
	})
	if n := countAnnounces(f.call("sessions_list", nil, nil)); n < 1 {
		t.Fatal("fire-and-forget reply not delivered to the sender")
	}
}

func TestSendRoleSystemNeedsGrant(t *testing.T) {
	f := newSendFixture(t, "")
	out, res := f.send(map[string]any{"key": "agent:main:worker", "message": "obey", "role": "system"})
	if out.Status != "forbidden" || out.Rule != "sessions.can_send_system" || !res.isError {
		t.Fatalf("system without grant: %+v %s", out, res.text)
	}
	g := newSendFixture(t, `
[mcp]
preset = "admin"
[agents.presets.admin.sessions]
can_send_system = true
`)
	out, res = g.send(map[string]any{"key": "agent:main:worker", "message": "be brief", "role": "system"})
	if out.Status != "ok" {
		t.Fatalf("system with grant: %+v %s", out, res.text)
	}
	msgs, _ := g.st.Transcript(context.Background(), "agent:main:worker")
	if msgs[0].Role != store.RoleSystem {
		t.Fatalf("role %s", msgs[0].Role)
	}
	nosend := newSendFixture(t, `
[mcp]
preset = "quiet"
[agents.presets.quiet.sessions]
can_send = false
`)
	out, _ = nosend.send(map[string]any{"key": "agent:main:worker", "message": "hi"})
	if out.Status != "forbidden" || out.Rule != "sessions.can_send" {
		t.Fatalf("can_send false: %+v", out)
	}
}

func TestSendDeliveredToClientSession(t *testing.T) {
	f := newSendFixture(t, "")
	out, res := f.send(map[string]any{"key": "agent:ops:main", "message": "deploy done"})
	if out.Status != "delivered" || out.RunID != "" {
		t.Fatalf("client session: %+v %s", out, res.text)
	}
	msgs, _ := f.st.Transcript(context.Background(), "agent:ops:main")
	if len(msgs) != 1 || !strings.Contains(msgs[0].Content.Text, "deploy done") {
		t.Fatalf("delivered transcript: %+v", msgs)
	}
}

func TestSendContinuesSpecialistHistory(t *testing.T) {
	f := newSendFixture(t, "")
	sp := f.spawn(map[string]any{"task": "remember the number 42", "label": "memory"})
	f.result(sp.RunID, 30)
	out, res := f.send(map[string]any{"label": "memory", "message": "what did I ask?"})
	if out.Status != "ok" || !strings.Contains(out.Reply, "remember the number 42") || strings.Contains(out.Reply, "UNTRUSTED DATA") || out.Key != sp.ChildSessionKey {
		t.Fatalf("specialist: %+v %s", out, res.text)
	}
	msgs, _ := f.st.Transcript(context.Background(), sp.ChildSessionKey)
	if len(msgs) != 4 {
		t.Fatalf("history not continued: %d messages", len(msgs))
	}
}

// Agent-to-agent: alpha sends to beta without waiting; beta's reply goes
// back to alpha as a turn (ping-pong), and alpha's REPLY_SKIP ends it.
func TestSendPingPongAndSkipTokens(t *testing.T) {
	f := newSendFixture(t, "\n[tools.sessions]\nmax_ping_pong_turns = 3\n")
	ctx := context.Background()
	for _, k := range []string{"agent:main:alpha", "agent:main:beta", "agent:main:gamma"} {
		f.session(k, "", "", 0)
	}
	alpha := policy.Caller{Key: "agent:main:alpha", AgentID: "main"}
	res := f.srv.reg.Call(ctx, alpha, nil, "sessions_send", json.RawMessage(`{"key":"agent:main:beta","message":"ping","timeoutSeconds":0}`), nil)
	if res.IsError {
		t.Fatal(res.Text)
	}
	var back *store.Run
	waitFor(t, "beta's reply to come back to alpha as a turn", func() bool {
		runs, _ := f.st.ListRuns(ctx, store.RunFilter{Requesters: []string{"agent:main:beta"}})
		if len(runs) == 1 && store.Terminal(runs[0].State) {
			back = runs[0]
		}
		return back != nil
	})
	if back.ChildKey != "agent:main:alpha" || back.ResultText != "REPLY_SKIP" || !strings.Contains(back.Task, "pong 1") {
		t.Fatalf("ping-pong turn: %+v", back)
	}
	all, _ := f.st.ListRuns(ctx, store.RunFilter{})
	if len(all) != 2 {
		t.Fatalf("REPLY_SKIP did not end the exchange: %d runs", len(all))
	}
	// ANNOUNCE_SKIP: no ping-pong and a silent announce.
	gamma := policy.Caller{Key: "agent:main:gamma", AgentID: "main"}
	res = f.srv.reg.Call(ctx, gamma, nil, "sessions_send", json.RawMessage(`{"key":"agent:main:beta","message":"be quiet","timeoutSeconds":0}`), nil)
	var out sendOut
	b, _ := json.Marshal(res.Structured)
	json.Unmarshal(b, &out)
	run, _ := f.srv.Runs().Wait(ctx, out.RunID, 20*time.Second)
	if run.ResultText != "ANNOUNCE_SKIP" {
		t.Fatalf("quiet run: %+v", run)
	}
	a, err := f.st.GetAnnounce(ctx, out.RunID)
	if err != nil || !a.Silent {
		t.Fatalf("ANNOUNCE_SKIP announce: %+v %v", a, err)
	}
}

// turnGateProvider answers the latest user message; a message containing
// "hold" blocks until release is closed, after saying so on started.
type turnGateProvider struct {
	started chan struct{}
	release chan struct{}
	mu      sync.Mutex
	reqs    []provider.Request
}

func (p *turnGateProvider) Name() string { return "script" }

func (p *turnGateProvider) Complete(ctx context.Context, req provider.Request) (*provider.Response, error) {
	p.mu.Lock()
	p.reqs = append(p.reqs, req)
	p.mu.Unlock()
	last := ""
	for _, m := range req.Messages {
		if m.Role == provider.RoleUser {
			last = m.Text
		}
	}
	if strings.Contains(last, "hold") {
		close(p.started)
		select {
		case <-p.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return &provider.Response{Text: "answer to first"}, nil
	}
	return &provider.Response{Text: "answer to second"}, nil
}

// A message sent to a busy session waits with its turn: the running turn
// never sees it, and it enters the transcript after that turn's reply.
func TestSendQueuedMessageEntersTranscriptWhenItsTurnStarts(t *testing.T) {
	p := &turnGateProvider{started: make(chan struct{}), release: make(chan struct{})}
	f := newFixtureFull(t, fmt.Sprintf(spawnConfig, ""), "2025-11-25", map[string]provider.Provider{"script": p})
	first, _ := f.send(map[string]any{"key": "agent:main:worker", "message": "first: hold", "timeoutSeconds": 0})
	select {
	case <-p.started:
	case <-time.After(20 * time.Second):
		t.Fatal("the first turn never reached the model")
	}
	second, _ := f.send(map[string]any{"key": "agent:main:worker", "message": "second", "timeoutSeconds": 0})
	if !second.Queued {
		t.Fatalf("second send: %+v, want queued", second)
	}
	msgs, err := f.st.Transcript(context.Background(), "agent:main:worker")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		if strings.Contains(m.Content.Text, "second") {
			t.Fatalf("the queued message is in the transcript while the first turn runs (seq %d)", m.Seq)
		}
	}
	close(p.release)
	for _, id := range []string{first.RunID, second.RunID} {
		if run, err := f.srv.Runs().Wait(context.Background(), id, 20*time.Second); err != nil || run.State != "ok" {
			t.Fatalf("run %s: %+v %v", id, run, err)
		}
	}
	msgs, err = f.st.Transcript(context.Background(), "agent:main:worker")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range msgs {
		switch {
		case m.Role == store.RoleUser && strings.Contains(m.Content.Text, "first: hold"):
			got = append(got, "user first")
		case m.Role == store.RoleUser && strings.Contains(m.Content.Text, "second"):
			got = append(got, "user second")
		case m.Role == store.RoleAssistant:
			got = append(got, "assistant: "+m.Content.Text)
		}
	}
	want := []string{"user first", "assistant: answer to first", "user second", "assistant: answer to second"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("transcript order %q, want %q", got, want)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.reqs) != 2 {
		t.Fatalf("%d model requests, want 2 (each message answered once)", len(p.reqs))
	}
	last := p.reqs[1].Messages[len(p.reqs[1].Messages)-1]
	if last.Role != provider.RoleUser || !strings.Contains(last.Text, "second") {
		t.Fatalf("the queued turn's request ends with %s %q, want the queued user message", last.Role, last.Text)
	}
}
