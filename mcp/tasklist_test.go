package mcp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/sessionplane/sessionplane/internal/testdb"
	"github.com/sessionplane/sessionplane/runtime/store"
	"github.com/sessionplane/sessionplane/tools"
)

// tasks calls task_list and decodes its output; it fails the test on an
// error result, or on structured content its output schema rejects.
func (f *fixture) tasks(args map[string]any) (tools.TaskListOut, string) {
	f.t.Helper()
	var out tools.TaskListOut
	res := f.call("task_list", args, &out)
	if res.IsError {
		f.t.Fatalf("task_list %v: %s", args, text(res))
	}
	f.matchesOutputSchema("task_list", res)
	return out, text(res)
}

// matchesOutputSchema checks a result's structured content against the
// tool's advertised output schema (strict clients validate it).
func (f *fixture) matchesOutputSchema(tool string, res *mcp.CallToolResult) {
	f.t.Helper()
	def, ok := f.srv.reg.Get(tool)
	if !ok {
		f.t.Fatalf("tool %s not registered", tool)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(def.OutputSchema))
	if err != nil {
		f.t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("out.json", doc); err != nil {
		f.t.Fatal(err)
	}
	sch, err := c.Compile("out.json")
	if err != nil {
		f.t.Fatalf("%s output schema: %v", tool, err)
	}
	b, _ := json.Marshal(res.StructuredContent)
	v, _ := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err := sch.Validate(v); err != nil {
		f.t.Fatalf("%s structured content %s does not match its output schema: %v", tool, b, err)
	}
}

func TestTaskListActions(t *testing.T) {
	f := newFixture(t, "")
	const me = "agent:main:main"

	out, txt := f.tasks(map[string]any{"action": "list_lists"})
	if out.Count != 0 || len(out.Lists) != 0 || !strings.Contains(txt, "No task lists yet") {
		t.Fatalf("empty list_lists: %+v %q", out, txt)
	}
	// create with only list: an empty list; again: it exists.
	out, txt = f.tasks(map[string]any{"action": "create", "list": "sprint"})
	if !out.ListCreated || out.List == nil || out.List.Name != "sprint" || out.List.Total != 0 || out.List.CreatedBy != me {
		t.Fatalf("create list: %+v", out)
	}
	out, txt = f.tasks(map[string]any{"action": "create", "list": "sprint"})
	if out.ListCreated || !strings.Contains(txt, `Task list "sprint" already exists`) {
		t.Fatalf("create list again: %+v %q", out, txt)
	}
	// create tasks: in an existing list, and in a new list (made on the way).
	out, txt = f.tasks(map[string]any{"action": "create", "list": "sprint", "title": "Write the parser"})
	if out.Task == nil || out.Task.ID != 1 || out.Task.Status != "pending" || out.Task.Owner != "" || out.ListCreated {
		t.Fatalf("create task: %+v", out)
	}
	if !strings.Contains(txt, `Task #1 created in "sprint": [pending] Write the parser — unowned`) {
		t.Fatalf("create text %q", txt)
	}
	out, _ = f.tasks(map[string]any{"action": "create", "list": "backlog", "title": "Fix the flaky test", "status": "in_progress", "owner": "current"})
	if !out.ListCreated || out.Task.Owner != me || out.Task.Status != "in_progress" || out.Task.List != "backlog" {
		t.Fatalf("create in a new list: %+v", out)
	}
	f.tasks(map[string]any{"action": "create", "list": "sprint", "title": "Review the PR"})

	// list, with filters.
	out, txt = f.tasks(map[string]any{"action": "list", "list": "sprint"})
	if out.Count != 2 || out.Tasks[0].Title != "Write the parser" || out.Tasks[1].ID != 3 || out.List.Pending != 2 {
		t.Fatalf("list: %+v", out)
	}
	if !strings.Contains(txt, "#1 [pending] Write the parser — unowned") || !strings.Contains(txt, "#3 [pending] Review the PR") {
		t.Fatalf("list text %q", txt)
	}
	out, _ = f.tasks(map[string]any{"action": "list", "list": "backlog", "owner": "current", "status": "in_progress"})
	if out.Count != 1 || out.Tasks[0].ID != 2 {
		t.Fatalf("list filtered: %+v", out)
	}
	out, txt = f.tasks(map[string]any{"action": "list", "list": "sprint", "status": "completed"})
	if out.Count != 0 || out.Tasks == nil || !strings.Contains(txt, "(no tasks)") {
		t.Fatalf("list filtered to nothing: %+v %q", out, txt)
	}

	// update: each change recorded; the same values change nothing.
	out, txt = f.tasks(map[string]any{"action": "update", "id": 1, "title": "Write the cron parser", "status": "in_progress", "owner": "agent:main:worker"})
	if len(out.Changes) != 3 || out.Task.Owner != "agent:main:worker" || out.Task.Status != "in_progress" || out.Task.Title != "Write the cron parser" {
		t.Fatalf("update: %+v", out)
	}
	if !strings.Contains(txt, "status: pending → in_progress") || !strings.Contains(txt, "owner: (none) → agent:main:worker") {
		t.Fatalf("update text %q", txt)
	}
	out, txt = f.tasks(map[string]any{"action": "update", "id": 1, "status": "in_progress"})
	if len(out.Changes) != 0 || out.Changes == nil || !strings.Contains(txt, "unchanged") {
		t.Fatalf("no-op update: %+v %q", out, txt)
	}

	// claim: a pending, unowned task becomes the caller's.
	out, txt = f.tasks(map[string]any{"action": "claim", "id": 3})
	if out.Task.Owner != me || out.Task.Status != "in_progress" || !strings.Contains(txt, "Claimed task #3 for "+me) {
		t.Fatalf("claim: %+v %q", out, txt)
	}
	f.wantError(f.call("task_list", map[string]any{"action": "claim", "id": 1}, nil), "task 1 is already claimed by agent:main:worker (status in_progress)")
	f.wantError(f.call("task_list", map[string]any{"action": "claim", "id": 3}, nil), "already claimed by "+me, "that is already you")
	f.tasks(map[string]any{"action": "update", "id": 3, "status": "completed"})
	f.wantError(f.call("task_list", map[string]any{"action": "claim", "id": 3}, nil), "already claimed by "+me)
	f.tasks(map[string]any{"action": "update", "id": 3, "owner": ""})
	f.wantError(f.call("task_list", map[string]any{"action": "claim", "id": 3}, nil), "task 3 is completed, not pending")

	// get: the task with its history (who, what, when).
	out, txt = f.tasks(map[string]any{"action": "get", "id": 1})
	var changes []string
	for _, e := range out.History {
		if e.Actor != me || e.CreatedAt == 0 {
			t.Errorf("event %+v", e)
		}
		changes = append(changes, e.Change)
	}
	want := []string{`created "Write the parser" (status pending, owner (none))`, `title: "Write the parser" → "Write the cron parser"`,
		"status: pending → in_progress", "owner: (none) → agent:main:worker"}
	if fmt.Sprint(changes) != fmt.Sprint(want) {
		t.Fatalf("history\n got %q\nwant %q", changes, want)
	}
	if !strings.Contains(txt, "History:") || !strings.Contains(txt, me+": status: pending → in_progress") {
		t.Fatalf("get text %q", txt)
	}
	out, _ = f.tasks(map[string]any{"action": "get", "id": 3})
	if len(out.History) != 4 || out.History[1].Change != "claimed by "+me+" (status pending → in_progress)" {
		t.Fatalf("claim history: %+v", out.History)
	}

	// list_lists: counts per status.
	out, txt = f.tasks(map[string]any{"action": "list_lists"})
	if out.Count != 2 || out.Lists[0].Name != "backlog" || out.Lists[1].Name != "sprint" {
		t.Fatalf("list_lists: %+v", out)
	}
	if s := out.Lists[1]; s.Total != 2 || s.InProgress != 1 || s.Completed != 1 || s.Pending != 0 {
		t.Fatalf("sprint counts: %+v", s)
	}
	if !strings.Contains(txt, "- sprint: 2 task(s): 0 pending, 1 in progress, 1 completed") {
		t.Fatalf("list_lists text %q", txt)
	}
}

func TestTaskListBadInput(t *testing.T) {
	f := newFixture(t, "")
	f.tasks(map[string]any{"action": "create", "list": "sprint", "title": "one"})
	tests := []struct {
		args map[string]any
		want []string
	}{
		{map[string]any{"action": "list", "list": "nope"}, []string{`list: no task list named "nope"`}},
		{map[string]any{"action": "list"}, []string{"list: required for list"}},
		{map[string]any{"action": "create", "title": "orphan"}, []string{"list: required for create"}},
		{map[string]any{"action": "get", "id": 999}, []string{"id: no task 999"}},
		{map[string]any{"action": "get"}, []string{"id: required for get"}},
		{map[string]any{"action": "claim", "id": 42}, []string{"id: no task 42"}},
		{map[string]any{"action": "update", "id": 999, "status": "completed"}, []string{"id: no task 999"}},
		{map[string]any{"action": "update", "id": 1}, []string{"update: nothing to change"}},
		{map[string]any{"action": "create", "list": "sprint", "title": "x", "status": "done"}, []string{"status:", "pending"}},
		{map[string]any{"action": "list", "list": "sprint", "status": "finished"}, []string{"status:"}},
		{map[string]any{"action": "erase"}, []string{"action:"}},
		{map[string]any{"list": "sprint"}, []string{"action"}},
		{map[string]any{"action": "get", "id": 0}, []string{"id:"}},
		{map[string]any{"action": "list", "list": "sprint", "title": "x"}, []string{"title: is not used by list"}},
		{map[string]any{"action": "list_lists", "list": "sprint"}, []string{"list: is not used by list_lists"}},
		{map[string]any{"action": "create", "list": "sprint", "owner": "current"}, []string{"title: required when status or owner is given"}},
		{map[string]any{"action": "create", "list": "sprint", "title": "   "}, []string{"title: empty"}},
		{map[string]any{"action": "claim", "id": 1, "owner": ""}, []string{"owner: empty"}},
		{map[string]any{"action": "update", "id": 1, "owner": "agent:main:has space"}, []string{"owner: session key"}},
		{map[string]any{"action": "create", "list": strings.Repeat("l", 101), "title": "x"}, []string{"list: longer than 100"}},
	}
	for _, tc := range tests {
		res := f.call("task_list", tc.args, nil)
		if !res.IsError {
			t.Errorf("%v: want an error, got %s", tc.args, text(res))
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(text(res), w) {
				t.Errorf("%v: error %q does not mention %q", tc.args, text(res), w)
			}
		}
	}
	// Nothing was changed by the failed calls.
	out, _ := f.tasks(map[string]any{"action": "get", "id": 1})
	if len(out.History) != 1 || out.Task.Status != "pending" {
		t.Fatalf("task changed by failed calls: %+v", out)
	}
}

// Many sessions claiming one task at once through the MCP client: exactly
// one wins; every loser is told who owns it.
func TestTaskListConcurrentClaim(t *testing.T) {
	f := newFixture(t, "")
	f.tasks(map[string]any{"action": "create", "list": "team", "title": "the one task"})
	const n = 20
	var wg sync.WaitGroup
	results := make([]*mcp.CallToolResult, n)
	errs := make([]error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := mcp.CallToolRequest{}
			req.Params.Name = "task_list"
			req.Params.Arguments = map[string]any{"action": "claim", "id": 1, "owner": fmt.Sprintf("agent:main:worker-%02d", i)}
			results[i], errs[i] = f.c.CallTool(context.Background(), req)
		}()
	}
	wg.Wait()
	winner := ""
	var losers []string
	for i, res := range results {
		if errs[i] != nil {
			t.Fatalf("claim %d: %v", i, errs[i])
		}
		if !res.IsError {
			if winner != "" {
				t.Fatalf("two winners: %s and worker-%02d", winner, i)
			}
			var out tools.TaskListOut
			b, _ := json.Marshal(res.StructuredContent)
			_ = json.Unmarshal(b, &out)
			winner = out.Task.Owner
			if winner != fmt.Sprintf("agent:main:worker-%02d", i) {
				t.Fatalf("winner %d got owner %q", i, winner)
			}
			continue
		}
		losers = append(losers, text(res))
	}
	if winner == "" || len(losers) != n-1 {
		t.Fatalf("winner %q, %d losers", winner, len(losers))
	}
	for _, l := range losers {
		if !strings.Contains(l, "task 1 is already claimed by "+winner+" (status in_progress)") {
			t.Fatalf("loser's error does not name the owner %s: %q", winner, l)
		}
	}
	out, _ := f.tasks(map[string]any{"action": "get", "id": 1})
	claims := 0
	for _, e := range out.History {
		if strings.HasPrefix(e.Change, "claimed by ") {
			claims++
		}
	}
	if claims != 1 || out.Task.Owner != winner {
		t.Fatalf("history records %d claims, owner %q", claims, out.Task.Owner)
	}
}

// Two store handles on one file (as two server processes would have):
// concurrent claims of each task have exactly one winner.
func TestTaskClaimTwoStoreHandles(t *testing.T) {
	path := testdb.DSN(t, "sp.db")
	ctx := context.Background()
	var handles [2]*store.Store
	for i := range handles {
		st, err := store.Open(ctx, path, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		handles[i] = st
	}
	const tasks, perHandle = 5, 8
	var ids []int64
	for i := 0; i < tasks; i++ {
		tk := &store.Task{List: "shared", Title: fmt.Sprint("task ", i)}
		if _, err := handles[i%2].CreateTask(ctx, tk, "agent:main:main"); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, tk.ID)
	}
	type result struct {
		task  int64
		owner string
		err   error
	}
	results := make(chan result, tasks*2*perHandle)
	var wg sync.WaitGroup
	for _, id := range ids {
		for h := range handles {
			for w := 0; w < perHandle; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					owner := fmt.Sprintf("agent:main:p%d-w%d", h, w)
					_, err := handles[h].ClaimTask(ctx, id, owner, owner)
					results <- result{id, owner, err}
				}()
			}
		}
	}
	wg.Wait()
	close(results)
	winners := map[int64]string{}
	var lost []result
	for r := range results {
		if r.err == nil {
			if prev, ok := winners[r.task]; ok {
				t.Fatalf("task %d claimed by both %s and %s", r.task, prev, r.owner)
			}
			winners[r.task] = r.owner
			continue
		}
		lost = append(lost, r)
	}
	if len(winners) != tasks || len(lost) != tasks*(2*perHandle-1) {
		t.Fatalf("%d winners, %d losers", len(winners), len(lost))
	}
	for _, r := range lost {
		var ce *store.ClaimError
		if !errors.As(r.err, &ce) || ce.Owner != winners[r.task] {
			t.Fatalf("task %d loser %s: %v (winner %s)", r.task, r.owner, r.err, winners[r.task])
		}
	}
	for _, id := range ids {
		tk, err := handles[1].GetTask(ctx, id)
		if err != nil || tk.Owner != winners[id] || tk.Status != store.TaskInProgress {
			t.Fatalf("task %d: %+v %v", id, tk, err)
		}
	}
}

// Under [approval] mutate-session = "elicit" with a client that cannot be
// asked, task_list and cron still read (list, get, status need no
// approval) but refuse to change anything.
func TestTaskListAndCronApprovalOnlyForChanges(t *testing.T) {
	f := newFixture(t, "[approval]\nmutate-session = \"elicit\"\n")
	for _, c := range []struct {
		tool   string
		args   map[string]any
		refuse bool
	}{
		{"task_list", map[string]any{"action": "list_lists"}, false},
		{"task_list", map[string]any{"action": "get", "id": 1}, false}, // no such task: an error, not a refusal
		{"task_list", map[string]any{"action": "create", "list": "x", "title": "t"}, true},
		{"cron", map[string]any{"action": "list"}, false},
		{"cron", map[string]any{"action": "add", "job": map[string]any{"name": "n", "schedule": "every:1h",
			"payload": map[string]any{"kind": "agentTurn", "message": "m"}}}, true},
	} {
		var ref tools.Refusal
		res := f.call(c.tool, c.args, &ref)
		if got := ref.Status == "forbidden"; got != c.refuse || c.refuse && ref.Rule != "approval.mutate-session" {
			t.Errorf("%s %v: refused %v (%+v), want %v: %s", c.tool, c.args, got, ref, c.refuse, text(res))
		}
	}
	if lists, _ := f.st.TaskLists(context.Background()); len(lists) != 0 {
		t.Fatalf("a refused create made %d lists", len(lists))
	}
}
