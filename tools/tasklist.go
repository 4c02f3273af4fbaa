package tools

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/sessionplane/sessionplane/policy"
	"github.com/sessionplane/sessionplane/runtime/store"
)

// Task lists are shared by every session of the database (a team of
// sessions coordinates through them): any caller the gate lets call
// task_list sees and changes every list. Owners are session keys; every
// change is recorded with the session that made it.

// TaskListIn is the input of task_list.
type TaskListIn struct {
	Action string  `json:"action" jsonschema:"create (list + title; list alone: an empty list), list, list_lists, get (with history), update, claim" schema:"enum=create|list|list_lists|get|update|claim"`
	List   string  `json:"list,omitempty" jsonschema:"list name"`
	ID     int64   `json:"id,omitempty" jsonschema:"task id" schema:"min=1"`
	Title  string  `json:"title,omitempty" jsonschema:"create: the task; update: its new title"`
	Status string  `json:"status,omitempty" jsonschema:"create/update: the status; list: a filter" schema:"enum=pending|in_progress|completed"`
	Owner  *string `json:"owner,omitempty" jsonschema:"a session key (current = you; \"\" on update = unowned); list: a filter"`
}

// ApprovalSummary names the action, for the approval prompt.
func (in TaskListIn) ApprovalSummary() string {
	s := in.Action
	if in.List != "" {
		s += " " + in.List
	}
	if in.ID != 0 {
		s += fmt.Sprintf(" #%d", in.ID)
	}
	return strings.TrimSpace(s + " " + firstN(in.Title, 200))
}

// TaskInfo is a task as task_list shows it.
type TaskInfo struct {
	ID        int64  `json:"id"`
	List      string `json:"list"`
	Title     string `json:"title"`
	Status    string `json:"status" jsonschema:"pending, in_progress or completed"`
	Owner     string `json:"owner" jsonschema:"the owning session key; empty = unowned"`
	CreatedAt int64  `json:"createdAt"`
	UpdatedAt int64  `json:"updatedAt"`
}

// TaskEventInfo is one recorded change of a task.
type TaskEventInfo struct {
	Actor     string `json:"actor" jsonschema:"the session that made the change"`
	Change    string `json:"change"`
	CreatedAt int64  `json:"createdAt"`
}

// TaskListInfo is a list with its counts per status.
type TaskListInfo struct {
	Name       string `json:"name"`
	CreatedBy  string `json:"createdBy"`
	CreatedAt  int64  `json:"createdAt"`
	Total      int    `json:"total"`
	Pending    int    `json:"pending"`
	InProgress int    `json:"in_progress"`
	Completed  int    `json:"completed"`
}

// TaskListOut is the output of task_list; which fields are set depends on
// the action.
type TaskListOut struct {
	Action      string          `json:"action"`
	List        *TaskListInfo   `json:"list,omitempty" jsonschema:"create, list: the list with its counts"`
	ListCreated bool            `json:"listCreated,omitempty" jsonschema:"create: the list did not exist and was created"`
	Task        *TaskInfo       `json:"task,omitempty" jsonschema:"create, get, update, claim: the task"`
	Tasks       []TaskInfo      `json:"tasks,omitzero" jsonschema:"list: the tasks selected, oldest first"`
	Lists       []TaskListInfo  `json:"lists,omitzero" jsonschema:"list_lists: every list"`
	History     []TaskEventInfo `json:"history,omitzero" jsonschema:"get: the task's changes, oldest first"`
	Changes     []string        `json:"changes,omitzero" jsonschema:"update: what changed (empty: nothing did)"`
	Count       int             `json:"count" jsonschema:"how many tasks (list) or lists (list_lists)"`
}

// maxTaskTitle and maxListName bound what a model may store.
const (
	maxTaskTitle = 500
	maxListName  = 100
)

func taskInfo(t *store.Task) TaskInfo {
	return TaskInfo{ID: t.ID, List: t.List, Title: t.Title, Status: t.Status, Owner: t.Owner, CreatedAt: t.CreatedAt, UpdatedAt: t.UpdatedAt}
}

func taskListInfo(l store.TaskList) TaskListInfo {
	return TaskListInfo{Name: l.Name, CreatedBy: l.CreatedBy, CreatedAt: l.CreatedAt, Total: l.Total(),
		Pending: l.Pending, InProgress: l.InProgress, Completed: l.Completed}
}

func checkListName(action, name string) (string, error) {
	name = strings.TrimSpace(name)
	switch {
	case name == "":
		return "", fmt.Errorf("list: required for %s: name the list (list_lists shows them)", action)
	case utf8.RuneCountInString(name) > maxListName:
		return "", fmt.Errorf("list: longer than %d characters", maxListName)
	}
	return name, nil
}

func checkTitle(title string) (string, error) {
	title = strings.TrimSpace(title)
	switch {
	case title == "":
		return "", errors.New("title: empty: say what the task is")
	case utf8.RuneCountInString(title) > maxTaskTitle:
		return "", fmt.Errorf("title: longer than %d characters: keep the title short and put details elsewhere", maxTaskTitle)
	}
	return title, nil
}

// ownerKey resolves an owner argument: the aliases current and main, and
// a well-formed session key ("" stays "": unowned).
func ownerKey(call *Call, owner string) (string, error) {
	owner = strings.TrimSpace(owner)
	if owner == "" {
		return "", nil
	}
	owner = policy.ResolveKey(call.Caller, owner)
	if err := policy.ValidKey(owner); err != nil {
		return "", fmt.Errorf("owner: %v", err)
	}
	return owner, nil
}

// needTask returns the task, or an error naming the id field.
func needTask(ctx context.Context, call *Call, action string, id int64) (*store.Task, error) {
	if id == 0 {
		return nil, fmt.Errorf("id: required for %s: give the task id (task_list list shows them)", action)
	}
	t, err := call.Env.Store.GetTask(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("id: no task %d (task_list list shows the tasks of a list)", id)
	}
	return t, err
}

// needList returns the list, or an error naming the list field.
func needList(ctx context.Context, call *Call, action, name string) (*store.TaskList, error) {
	name, err := checkListName(action, name)
	if err != nil {
		return nil, err
	}
	l, err := call.Env.Store.GetTaskList(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("list: no task list named %q (list_lists shows them; create makes one)", name)
	}
	return l, err
}

// unused reports arguments an action ignores, so a model learns at once
// that it asked for something that does not happen.
func unused(action string, in TaskListIn, allowed ...string) error {
	set := map[string]bool{}
	for _, a := range allowed {
		set[a] = true
	}
	var extra []string
	if in.List != "" && !set["list"] {
		extra = append(extra, "list")
	}
	if in.ID != 0 && !set["id"] {
		extra = append(extra, "id")
	}
	if in.Title != "" && !set["title"] {
		extra = append(extra, "title")
	}
	if in.Status != "" && !set["status"] {
		extra = append(extra, "status")
	}
	if in.Owner != nil && !set["owner"] {
		extra = append(extra, "owner")
	}
	if len(extra) > 0 {
		return fmt.Errorf("%s: %s not used by %s (it takes %s)", strings.Join(extra, ", "), isAre(len(extra)), action, orNone(allowed))
	}
	return nil
}

func isAre(n int) string {
	if n == 1 {
		return "is"
	}
	return "are"
}

func orNone(list []string) string {
	if len(list) == 0 {
		return "no other argument"
	}
	return strings.Join(list, ", ")
}

func taskList(ctx context.Context, call *Call, in TaskListIn) (TaskListOut, string, error) {
	out := TaskListOut{Action: in.Action}
	st := call.Env.Store
	actor := call.Caller.Key
	switch in.Action {
	case "list_lists":
		call.NoApproval()
		if err := unused(in.Action, in); err != nil {
			return out, "", err
		}
		lists, err := st.TaskLists(ctx)
		if err != nil {
			return out, "", err
		}
		out.Lists = []TaskListInfo{}
		for _, l := range lists {
			out.Lists = append(out.Lists, taskListInfo(l))
		}
		out.Count = len(out.Lists)
		return out, renderTaskLists(out.Lists), nil

	case "list":
		call.NoApproval()
		if err := unused(in.Action, in, "list", "status", "owner"); err != nil {
			return out, "", err
		}
		l, err := needList(ctx, call, in.Action, in.List)
		if err != nil {
			return out, "", err
		}
		f := store.TaskFilter{List: l.Name, Status: in.Status}
		if in.Owner != nil {
			if f.Owner, err = ownerKey(call, *in.Owner); err != nil {
				return out, "", err
			}
		}
		tasks, err := st.ListTasks(ctx, f)
		if err != nil {
			return out, "", err
		}
		li := taskListInfo(*l)
		out.List = &li
		out.Tasks = []TaskInfo{}
		for _, t := range tasks {
			out.Tasks = append(out.Tasks, taskInfo(t))
		}
		out.Count = len(out.Tasks)
		return out, renderTasks(li, out.Tasks, f), nil

	case "get":
		call.NoApproval()
		if err := unused(in.Action, in, "id"); err != nil {
			return out, "", err
		}
		t, err := needTask(ctx, call, in.Action, in.ID)
		if err != nil {
			return out, "", err
		}
		events, err := st.TaskHistory(ctx, t.ID)
		if err != nil {
			return out, "", err
		}
		ti := taskInfo(t)
		out.Task = &ti
		out.History = []TaskEventInfo{}
		for _, e := range events {
			out.History = append(out.History, TaskEventInfo{Actor: e.Actor, Change: e.Change, CreatedAt: e.CreatedAt})
		}
		return out, renderTaskWithHistory(ti, out.History), nil

	case "create":
		if err := unused(in.Action, in, "list", "title", "status", "owner"); err != nil {
			return out, "", err
		}
		name, err := checkListName(in.Action, in.List)
		if err != nil {
			return out, "", err
		}
		if in.Title == "" {
			if in.Status != "" || in.Owner != nil {
				return out, "", errors.New("title: required when status or owner is given: create with only list makes an empty list")
			}
			if err := call.Approve(ctx, in.ApprovalSummary()); err != nil {
				return out, "", err
			}
			created, err := st.CreateTaskList(ctx, name, actor)
			if err != nil {
				return out, "", err
			}
			l, err := st.GetTaskList(ctx, name)
			if err != nil {
				return out, "", err
			}
			li := taskListInfo(*l)
			out.List, out.ListCreated = &li, created
			if !created {
				return out, fmt.Sprintf("Task list %q already exists (%s).", name, countsText(li)), nil
			}
			return out, fmt.Sprintf("Task list %q created (empty). Add tasks with action create, list %q and a title.", name, name), nil
		}
		title, err := checkTitle(in.Title)
		if err != nil {
			return out, "", err
		}
		owner := ""
		if in.Owner != nil {
			if owner, err = ownerKey(call, *in.Owner); err != nil {
				return out, "", err
			}
		}
		if err := call.Approve(ctx, in.ApprovalSummary()); err != nil {
			return out, "", err
		}
		t := &store.Task{List: name, Title: title, Status: in.Status, Owner: owner}
		created, err := st.CreateTask(ctx, t, actor)
		if err != nil {
			return out, "", err
		}
		ti := taskInfo(t)
		out.Task, out.ListCreated = &ti, created
		if l, err := st.GetTaskList(ctx, name); err == nil {
			li := taskListInfo(*l)
			out.List = &li
		}
		text := fmt.Sprintf("Task #%d created in %q: %s", t.ID, name, taskLine(ti))
		if created {
			text += fmt.Sprintf("\n(The list %q was new and has been created.)", name)
		}
		return out, text, nil

	case "update":
		if err := unused(in.Action, in, "id", "title", "status", "owner"); err != nil {
			return out, "", err
		}
		if in.ID == 0 {
			return out, "", errors.New("id: required for update: give the task id (task_list list shows them)")
		}
		var ch store.TaskChange
		if in.Title != "" {
			title, err := checkTitle(in.Title)
			if err != nil {
				return out, "", err
			}
			ch.Title = &title
		}
		if in.Status != "" {
			ch.Status = &in.Status
		}
		if in.Owner != nil {
			owner, err := ownerKey(call, *in.Owner)
			if err != nil {
				return out, "", err
			}
			ch.Owner = &owner
		}
		if ch.Title == nil && ch.Status == nil && ch.Owner == nil {
			return out, "", errors.New("update: nothing to change: give status, title or owner (owner \"\" makes the task unowned)")
		}
		if _, err := needTask(ctx, call, in.Action, in.ID); err != nil {
			return out, "", err
		}
		if err := call.Approve(ctx, in.ApprovalSummary()); err != nil {
			return out, "", err
		}
		t, changes, err := st.UpdateTask(ctx, in.ID, ch, actor)
		if errors.Is(err, store.ErrNotFound) {
			return out, "", fmt.Errorf("id: no task %d (it was removed meanwhile)", in.ID)
		}
		if err != nil {
			return out, "", err
		}
		ti := taskInfo(t)
		out.Task, out.Changes = &ti, append([]string{}, changes...)
		if len(changes) == 0 {
			return out, fmt.Sprintf("Task #%d unchanged (the values given are its current ones): %s", t.ID, taskLine(ti)), nil
		}
		return out, fmt.Sprintf("Task #%d updated: %s\nNow: %s", t.ID, strings.Join(changes, "; "), taskLine(ti)), nil

	case "claim":
		if err := unused(in.Action, in, "id", "owner"); err != nil {
			return out, "", err
		}
		owner := actor
		if in.Owner != nil {
			o, err := ownerKey(call, *in.Owner)
			if err != nil {
				return out, "", err
			}
			if o == "" {
				return out, "", errors.New("owner: empty: claim needs an owner (omit it to claim for yourself)")
			}
			owner = o
		}
		if _, err := needTask(ctx, call, in.Action, in.ID); err != nil {
			return out, "", err
		}
		if err := call.Approve(ctx, in.ApprovalSummary()); err != nil {
			return out, "", err
		}
		t, err := st.ClaimTask(ctx, in.ID, owner, actor)
		var ce *store.ClaimError
		switch {
		case errors.As(err, &ce) && ce.Owner == owner:
			return out, "", fmt.Errorf("claim: %v — that is already %s", ce, whoText(call, owner))
		case errors.As(err, &ce):
			return out, "", fmt.Errorf("claim: %v: pick another pending task (task_list list with status pending)", ce)
		case errors.Is(err, store.ErrNotFound):
			return out, "", fmt.Errorf("id: no task %d", in.ID)
		case err != nil:
			return out, "", err
		}
		ti := taskInfo(t)
		out.Task = &ti
		return out, fmt.Sprintf("Claimed task #%d for %s: %s", t.ID, owner, taskLine(ti)), nil
	}
	return out, "", fmt.Errorf("action: %q is not create, list, list_lists, get, update or claim", in.Action)
}

func whoText(call *Call, owner string) string {
	if owner == call.Caller.Key {
		return "you"
	}
	return owner
}

func countsText(l TaskListInfo) string {
	return fmt.Sprintf("%d task(s): %d pending, %d in progress, %d completed", l.Total, l.Pending, l.InProgress, l.Completed)
}

func taskLine(t TaskInfo) string {
	s := fmt.Sprintf("[%s] %s", t.Status, t.Title)
	if t.Owner != "" {
		s += " — owner " + t.Owner
	} else {
		s += " — unowned"
	}
	return s
}

func renderTaskLists(lists []TaskListInfo) string {
	if len(lists) == 0 {
		return "No task lists yet. Create one with action create and a list name (and a title to add its first task)."
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d task list(s):\n", len(lists))
	for _, l := range lists {
		fmt.Fprintf(&b, "- %s: %s (created by %s)\n", l.Name, countsText(l), l.CreatedBy)
	}
	return strings.TrimSpace(b.String())
}

func renderTasks(l TaskListInfo, tasks []TaskInfo, f store.TaskFilter) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Task list %q — %s.\n", l.Name, countsText(l))
	var filters []string
	if f.Status != "" {
		filters = append(filters, "status "+f.Status)
	}
	if f.Owner != "" {
		filters = append(filters, "owner "+f.Owner)
	}
	if len(filters) > 0 {
		fmt.Fprintf(&b, "Showing %d with %s:\n", len(tasks), strings.Join(filters, " and "))
	}
	if len(tasks) == 0 {
		b.WriteString("(no tasks)")
	}
	for _, t := range tasks {
		fmt.Fprintf(&b, "#%d %s\n", t.ID, taskLine(t))
	}
	return strings.TrimSpace(b.String())
}

func renderTaskWithHistory(t TaskInfo, history []TaskEventInfo) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Task #%d in %q: %s\nCreated %s, updated %s.\nHistory:\n", t.ID, t.List, taskLine(t), msToRFC3339(t.CreatedAt), msToRFC3339(t.UpdatedAt))
	for _, e := range history {
		fmt.Fprintf(&b, "- %s %s: %s\n", msToRFC3339(e.CreatedAt), e.Actor, e.Change)
	}
	return strings.TrimSpace(b.String())
}

// TaskListTool is task_list (action class mutate-session): shared task
// lists for a team of sessions, with an atomic claim.
func TaskListTool() *Tool {
	return Define(Meta{Name: "task_list", Title: "Shared task lists", Class: policy.ClassMutate, DeferApproval: true,
		Annotations: Annotations{ReadOnly: false, Destructive: false, Idempotent: false, OpenWorld: false},
		Description: "Named task lists shared by every session, to coordinate a team of sessions. claim atomically takes a pending, unowned task " +
			"(it becomes yours and in_progress). Owners are session keys; current means you."},
		taskList)
}
