package mcp

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/sessionplane/sessionplane/internal/testdb"
	"github.com/sessionplane/sessionplane/runtime/config"
	"github.com/sessionplane/sessionplane/runtime/cron"
	"github.com/sessionplane/sessionplane/runtime/provider"
	"github.com/sessionplane/sessionplane/runtime/store"
	"github.com/sessionplane/sessionplane/tools"
)

// newCronFixture is the spawn fixture (scripted provider, agents main and
// researcher; extra is appended to its config) with the scheduler tuned by
// cronOpts (nil = the defaults).
func newCronFixture(t *testing.T, extra string, cronOpts *cron.Options) (*fixture, *provider.Scripted) {
	t.Helper()
	sp := scripted(t)
	cfg, err := config.Parse([]byte(fmt.Sprintf(spawnConfig, "")+extra), "test.toml")
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	ctx := context.Background()
	st, err := store.Open(ctx, testdb.DSN(t, "sp.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	srv, err := Build(cfg, st, &BuildOptions{Version: "test", Providers: map[string]provider.Provider{"script": sp}, Cron: cronOpts})
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	c, err := client.NewInProcessClient(srv.MCPServer())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	init := mcp.InitializeRequest{}
	init.Params.ProtocolVersion = "2025-11-25"
	init.Params.ClientInfo = mcp.Implementation{Name: "test", Version: "1"}
	if _, err := c.Initialize(ctx, init); err != nil {
		t.Fatalf("initialize: %v", err)
	}
	return &fixture{t: t, st: st, srv: srv, c: c, agent: cfg.MCP.Agent}, sp
}

// cronCall calls cron and decodes its output; it fails the test on an
// error result.
func (f *fixture) cronCall(args map[string]any) (tools.CronOut, *mcp.CallToolResult) {
	f.t.Helper()
	var out tools.CronOut
	res := f.call("cron", args, &out)
	if res.IsError {
		f.t.Fatalf("cron %v: %s", args, text(res))
	}
	f.matchesOutputSchema("cron", res)
	return out, res
}

func job(name, schedule string, payload map[string]any) map[string]any {
	if payload["kind"] == nil {
		payload["kind"] = "agentTurn"
	}
	return map[string]any{"name": name, "schedule": schedule, "payload": payload}
}

func TestCronAddValidation(t *testing.T) {
	f, _ := newCronFixture(t, "", nil)
	msg := map[string]any{"message": "quick"}
	with := func(base map[string]any, k string, v any) map[string]any {
		m := map[string]any{}
		for kk, vv := range base {
			m[kk] = vv
		}
		m[k] = v
		return m
	}
	tests := []struct {
		name string
		args map[string]any
		want []string
	}{
		{"no job", map[string]any{"action": "add"}, []string{"job: required for add"}},
		{"bad cron", map[string]any{"action": "add", "job": job("j", "61 * * * *", msg)}, []string{"job.schedule", "minute field", "out of bounds"}},
		{"six fields", map[string]any{"action": "add", "job": job("j", "0 0 9 * * *", msg)}, []string{"job.schedule", "has 6 fields"}},
		{"never", map[string]any{"action": "add", "job": job("j", "0 0 30 2 *", msg)}, []string{"job.schedule", "never matches a date"}},
		{"every too short", map[string]any{"action": "add", "job": job("j", "every:5s", msg)}, []string{"job.schedule: every:5s is shorter than the minimum interval 10s"}},
		{"every not a duration", map[string]any{"action": "add", "job": job("j", "every:often", msg)}, []string{"job.schedule", "not a Go duration"}},
		{"at in the past", map[string]any{"action": "add", "job": job("j", "at:2020-01-01T00:00:00Z", msg)}, []string{"job.schedule: at:2020-01-01T00:00:00Z is not in the future"}},
		{"at not RFC3339", map[string]any{"action": "add", "job": job("j", "at:tomorrow 9am", msg)}, []string{"job.schedule", "RFC3339"}},
		{"timezone", map[string]any{"action": "add", "job": with(job("j", "0 9 * * *", msg), "timezone", "Mars/Olympus")}, []string{"job.timezone", "Mars/Olympus"}},
		{"kind", map[string]any{"action": "add", "job": job("j", "every:1m", with(msg, "kind", "shell"))}, []string{"job.payload.kind"}},
		{"no message", map[string]any{"action": "add", "job": job("j", "every:1m", map[string]any{"message": " "})}, []string{"job.payload.message: empty"}},
		{"forced tool not active", map[string]any{"action": "add", "job": job("j", "every:1m", with(with(msg, "active_tools", []string{"task_list"}),
			"tool_choice", map[string]any{"type": "tool", "name": "sessions_list"}))}, []string{"job.payload.tool_choice", `forced tool "sessions_list" is not in active_tools`}},
		{"tool choice type", map[string]any{"action": "add", "job": job("j", "every:1m", with(msg, "tool_choice", map[string]any{"type": "sometimes"}))}, []string{"job.payload.tool_choice.type"}},
		{"tool without name", map[string]any{"action": "add", "job": job("j", "every:1m", with(msg, "tool_choice", map[string]any{"type": "tool"}))}, []string{"job.payload.tool_choice", "needs a name"}},
		{"model", map[string]any{"action": "add", "job": job("j", "every:1m", with(msg, "model", "nope/x"))}, []string{`job.payload.model: "nope/x" is not in [[models]]`}},
		{"agent", map[string]any{"action": "add", "job": job("j", "every:1m", with(msg, "agentId", "ghost"))}, []string{`job.payload.agentId: no agent "ghost"`}},
		{"timeout", map[string]any{"action": "add", "job": job("j", "every:1m", with(msg, "timeout_secs", -1))}, []string{"job.payload.timeout_secs"}},
		{"no name", map[string]any{"action": "add", "job": job("", "every:1m", msg)}, []string{"job.name: empty"}},
		{"job with list", map[string]any{"action": "list", "job": job("j", "every:1m", msg)}, []string{"job: only add takes a job"}},
		{"status without id", map[string]any{"action": "status"}, []string{"id: required for status"}},
		{"unknown id", map[string]any{"action": "run", "id": "nope"}, []string{`id: no cron job "nope"`}},
		{"bad action", map[string]any{"action": "pause"}, []string{"action:"}},
	}
	for _, tc := range tests {
		res := f.call("cron", tc.args, nil)
		if !res.IsError {
			t.Errorf("%s: want an error, got %s", tc.name, text(res))
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(text(res), w) {
				t.Errorf("%s: error %q does not mention %q", tc.name, text(res), w)
			}
		}
	}
	if jobs, _ := f.st.ListCronJobs(context.Background(), ""); len(jobs) != 0 {
		t.Fatalf("failed adds stored %d jobs", len(jobs))
	}
}

// Jobs are visible to the session that added them only.
func TestCronListStatusRemoveAndVisibility(t *testing.T) {
	f, _ := newCronFixture(t, "", nil)
	ctx := context.Background()
	out, res := f.cronCall(map[string]any{"action": "add", "job": map[string]any{"name": "morning", "schedule": "0 9 * * 1-5", "timezone": "Europe/Paris",
		"payload": map[string]any{"kind": "agentTurn", "message": "quick summary", "timeout_secs": 60}}})
	j := out.Job
	if j == nil || j.ID == "" || j.SessionKey != "cron:"+j.ID || j.Timezone != "Europe/Paris" || !j.Enabled || j.NextRunAt == 0 ||
		!strings.HasSuffix(j.NextRun, "T09:00:00+01:00") && !strings.HasSuffix(j.NextRun, "T09:00:00+02:00") {
		t.Fatalf("add: %+v", j)
	}
	if !strings.Contains(text(res), "Cron job added: "+j.ID+` "morning"`) || !strings.Contains(text(res), "Schedule: 0 9 * * 1-5 (Europe/Paris)") {
		t.Fatalf("add text %q", text(res))
	}
	// Another session's job.
	if err := f.st.InsertCronJob(ctx, &store.CronJob{ID: "foreign1", Name: "theirs", Schedule: "every:1h", Timezone: "UTC",
		Payload: `{"kind":"agentTurn","message":"x"}`, CreatorKey: "agent:main:other", Enabled: true, NextRunAt: time.Now().Add(time.Hour).UnixMilli()}); err != nil {
		t.Fatal(err)
	}
	out, res = f.cronCall(map[string]any{"action": "list"})
	if out.Count != 1 || len(out.Jobs) != 1 || out.Jobs[0].ID != j.ID || strings.Contains(text(res), "foreign1") {
		t.Fatalf("list: %+v %q", out, text(res))
	}
	for _, action := range []string{"status", "run", "remove"} {
		var ref tools.Refusal
		res := f.call("cron", map[string]any{"action": action, "id": "foreign1"}, &ref)
		if !res.IsError || ref.Status != "forbidden" || ref.Rule != "cron.owner" || !strings.Contains(ref.Message, "visible only to the session that added them") {
			t.Fatalf("%s of another session's job: %+v %s", action, ref, text(res))
		}
	}
	out, res = f.cronCall(map[string]any{"action": "status", "id": "morning"}) // by name
	if out.Job.ID != j.ID || out.Job.Payload.TimeoutSecs != 60 || !strings.Contains(text(res), "Last fired: never") {
		t.Fatalf("status by name: %+v %q", out.Job, text(res))
	}
	out, res = f.cronCall(map[string]any{"action": "remove", "id": j.ID})
	if !out.Removed || !strings.Contains(text(res), "removed") {
		t.Fatalf("remove: %+v", out)
	}
	out, res = f.cronCall(map[string]any{"action": "list"})
	if out.Count != 0 || !strings.Contains(text(res), "You have no cron jobs") {
		t.Fatalf("list after remove: %+v %q", out, text(res))
	}
	if _, err := f.st.GetCronJob(ctx, "foreign1"); err != nil {
		t.Fatalf("the other session's job: %v", err)
	}
}

// A real every: job end to end: the scheduler fires it, the turn runs in
// session cron:<jobId> and its announce reaches the creator (the MCP
// client's main session), exactly once.
func TestCronEveryJobEndToEnd(t *testing.T) {
	f, _ := newCronFixture(t, "", &cron.Options{Tick: 20 * time.Millisecond, MinEvery: 100 * time.Millisecond})
	ctx := context.Background()
	out, _ := f.cronCall(map[string]any{"action": "add", "job": job("report", "every:200ms", map[string]any{"message": "quick cron report"})})
	id, key := out.Job.ID, out.Job.SessionKey
	var first *store.Run
	waitFor(t, "a cron run to finish", func() bool {
		runs, err := f.st.ListRuns(ctx, store.RunFilter{Kind: "cron", Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range runs {
			if r.ChildKey == key && store.Terminal(r.State) {
				first = r
			}
		}
		return first != nil
	})
	status, _ := f.cronCall(map[string]any{"action": "status", "id": id})
	if status.Job.LastRunID == "" || status.Job.RunCount < 1 || status.Job.LastRunAt == 0 {
		t.Fatalf("status after a run: %+v", status.Job)
	}
	removed, _ := f.cronCall(map[string]any{"action": "remove", "id": id}) // stop it firing
	if !removed.Removed {
		t.Fatal("not removed")
	}
	if first.State != store.RunOK || first.Kind != "cron" || first.RequesterKey != "agent:main:main" || first.AgentID != "main" ||
		first.Label != "report" || first.ResultText != "quick result" {
		t.Fatalf("run: %+v", first)
	}
	sess, err := f.st.GetSession(ctx, key)
	if err != nil || sess.Kind != store.KindCron || sess.AgentID != "main" {
		t.Fatalf("session %s: %+v %v", key, sess, err)
	}
	msgs, err := f.st.Transcript(ctx, key)
	if err != nil || len(msgs) < 2 {
		t.Fatalf("transcript: %d messages, %v", len(msgs), err)
	}
	if m := msgs[0]; m.Role != store.RoleUser || !strings.Contains(m.Content.Text, "quick cron report") ||
		!strings.Contains(m.Content.Text, `[From: cron job "report" (`+id+"), added by agent:main:main, occurrence due ") {
		t.Fatalf("first message: %+v", m)
	}
	if m := msgs[1]; m.Role != store.RoleAssistant || m.Content.Text != "quick result" {
		t.Fatalf("reply: %+v", m)
	}
	// The announce: a durable row for the creator, delivered once.
	ann, err := f.st.GetAnnounce(ctx, first.ID)
	if err != nil || ann.RequesterKey != "agent:main:main" || !strings.Contains(ann.Body, `[announce] scheduled turn "report" (run `+first.ID+") finished: ok") ||
		!strings.Contains(ann.Body, "quick result") || !strings.Contains(ann.Body, "sessionKey "+key) {
		t.Fatalf("announce: %+v %v", ann, err)
	}
	var seen int
	for _, res := range []*mcp.CallToolResult{f.call("cron", map[string]any{"action": "list"}, nil), f.call("cron", map[string]any{"action": "list"}, nil)} {
		seen += strings.Count(text(res), "(run "+first.ID+")")
	}
	if ann, _ = f.st.GetAnnounce(ctx, first.ID); ann.DeliveredAt == 0 {
		t.Fatal("announce not delivered")
	}
	// The status/remove calls above may have carried it already: the
	// client's transcript holds it exactly once either way.
	msgs, _ = f.st.Transcript(ctx, "agent:main:main")
	inTranscript := 0
	for _, m := range msgs {
		if strings.Contains(m.Content.Text, "[announce]") && strings.Contains(m.Content.Text, first.ID) {
			inTranscript++
		}
	}
	if inTranscript != 1 || seen > 1 {
		t.Fatalf("announce in the creator's transcript %d times, in later results %d times", inTranscript, seen)
	}
	// spawn_status finds the run: its requester is the creator.
	var info runOut
	if res := f.call("spawn_status", map[string]any{"task_id": first.ID}, &info); res.IsError || info.Status != "ok" || info.ChildKey != key {
		t.Fatalf("spawn_status: %+v %s", info, text(res))
	}
}

// A cron job's active_tools/tool_choice and agentId reach the run and the
// provider request; run fires it out of schedule.
func TestCronToolControlsReachProvider(t *testing.T) {
	f, sp := newCronFixture(t, "", nil)
	ctx := context.Background()
	out, _ := f.cronCall(map[string]any{"action": "add", "job": job("classify", "every:1h", map[string]any{
		"message": "quick controlled turn", "agentId": "researcher", "model": "script/cheap",
		"active_tools": []string{"task_list", "sessions_list"}, "tool_choice": map[string]any{"type": "tool", "name": "task_list"}})})
	j := out.Job
	if j.Payload.ToolChoice == nil || j.Payload.ToolChoice.Name != "task_list" || j.Payload.AgentID != "researcher" {
		t.Fatalf("stored payload: %+v", j.Payload)
	}
	ran, res := f.cronCall(map[string]any{"action": "run", "id": j.ID})
	if ran.RunID == "" || !strings.Contains(text(res), "fired now: run "+ran.RunID) || ran.Job.NextRunAt != j.NextRunAt {
		t.Fatalf("run: %+v %q", ran, text(res))
	}
	var r *store.Run
	waitFor(t, "the cron run to finish", func() bool {
		var err error
		r, err = f.st.GetRun(ctx, ran.RunID)
		return err == nil && store.Terminal(r.State)
	})
	if r.State != store.RunOK || r.AgentID != "researcher" || r.Model != "script/cheap" || r.ChildKey != "cron:"+j.ID || r.Kind != "cron" {
		t.Fatalf("run: %+v", r)
	}
	var req *provider.Request
	for _, q := range sp.Requests() {
		for _, m := range q.Messages {
			if strings.Contains(m.Text, "quick controlled turn") {
				req = &q
			}
		}
	}
	if req == nil {
		t.Fatal("the provider never saw the cron turn")
	}
	var names []string
	for _, tl := range req.Tools {
		names = append(names, tl.Name)
	}
	slices.Sort(names)
	if fmt.Sprint(names) != "[sessions_list task_list]" {
		t.Errorf("tools offered: %v, want [sessions_list task_list]", names)
	}
	if req.ToolChoice.Mode != "tool" || req.ToolChoice.Name != "task_list" {
		t.Errorf("tool choice: %+v", req.ToolChoice)
	}
	if !strings.Contains(req.System, `agent "researcher"`) || !strings.Contains(req.System, "cron:"+j.ID) {
		t.Errorf("system prompt: %q", req.System)
	}
	st, _ := f.cronCall(map[string]any{"action": "status", "id": j.ID})
	if st.Job.LastRunID != ran.RunID || st.Job.LastRunState != "ok" || st.Job.RunCount != 1 {
		t.Fatalf("status: %+v", st.Job)
	}
}

// A job's turns are bound by the creator's preset: a client limited to a
// few tools cannot widen them through cron.
func TestCronTurnBoundByCreatorPreset(t *testing.T) {
	f, sp := newCronFixture(t, `
[mcp]
preset = "narrow"
[agents.presets.narrow]
tools.allow = ["cron", "task_list", "sessions_list"]
`, nil)
	ctx := context.Background()
	res := f.call("cron", map[string]any{"action": "add", "job": job("forced", "every:1h", map[string]any{"message": "quick",
		"active_tools": []string{"sessions_history"}, "tool_choice": map[string]any{"type": "tool", "name": "sessions_history"}})}, nil)
	f.wantError(res, "job.payload.tool_choice: forces \"sessions_history\"", "tools.allow")
	out, _ := f.cronCall(map[string]any{"action": "add", "job": job("narrow job", "every:1h", map[string]any{"message": "quick narrow turn"})})
	sess, err := f.st.GetSession(ctx, out.Job.SessionKey)
	// The job's session carries no preset: the creator's authority is stored
	// with the job (its payload) and re-resolved at every firing.
	if err != nil || sess.Preset != "" || sess.Label != "narrow job" || sess.Kind != store.KindCron || sess.SpawnedBy != "agent:main:narrow" {
		t.Fatalf("cron session: %+v %v", sess, err)
	}
	ran, _ := f.cronCall(map[string]any{"action": "run", "id": out.Job.ID})
	waitFor(t, "the cron run to finish", func() bool {
		r, err := f.st.GetRun(ctx, ran.RunID)
		return err == nil && store.Terminal(r.State)
	})
	if st := f.runState(ran.RunID); st != store.RunOK {
		t.Fatalf("run %s", st)
	}
	var offered []string
	for _, q := range sp.Requests() {
		if strings.Contains(q.System, out.Job.SessionKey) {
			for _, tl := range q.Tools {
				offered = append(offered, tl.Name)
			}
		}
	}
	slices.Sort(offered)
	if fmt.Sprint(offered) != "[cron sessions_list task_list]" {
		t.Fatalf("tools offered to the cron turn: %v, want the creator's preset's [cron sessions_list task_list]", offered)
	}
}

// [cron] min_every_seconds sets the shortest every: interval the cron tool
// accepts (the default is 10 s).
func TestCronMinEveryFromConfig(t *testing.T) {
	f, _ := newCronFixture(t, "\n[cron]\nmin_every_seconds = 2\n", nil)
	out, _ := f.cronCall(map[string]any{"action": "add", "job": job("fast", "every:2s", map[string]any{"message": "quick"})})
	if out.Job.ID == "" {
		t.Fatalf("every:2s with min_every_seconds = 2 not added: %+v", out)
	}
	res := f.call("cron", map[string]any{"action": "add", "job": job("faster", "every:1s", map[string]any{"message": "quick"})}, nil)
	if !res.IsError || !strings.Contains(text(res), "2s") {
		t.Fatalf("every:1s under a 2 s minimum: %s", text(res))
	}
	f.cronCall(map[string]any{"action": "remove", "id": out.Job.ID})
}
