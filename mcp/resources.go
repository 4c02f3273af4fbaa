package mcp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/sessionplane/sessionplane/policy"
	"github.com/sessionplane/sessionplane/runtime/store"
	"github.com/sessionplane/sessionplane/tools"
)

// subscriptions tracks resources/subscribe for the client (mcp-go
// acknowledges subscriptions on stdio but does not track them): for each
// URI the state last reported, so a change sends
// notifications/resources/updated.
type subscriptions struct {
	mu    sync.Mutex
	state map[string]string // uri → state fingerprint
}

func (s *Server) addResourceSurface(hooks *server.Hooks) {
	s.subs = &subscriptions{state: map[string]string{}}
	hooks.AddAfterSubscribe(func(ctx context.Context, _ any, req *mcp.SubscribeRequest, _ *mcp.EmptyResult) {
		uri := req.Params.URI
		fp, err := s.fingerprint(ctx, uri)
		if err != nil {
			s.log.Debug("subscription to a resource the client cannot read ignored", "uri", uri, "err", err)
			return
		}
		s.subs.mu.Lock()
		s.subs.state[uri] = fp
		s.subs.mu.Unlock()
	})
	hooks.AddAfterUnsubscribe(func(_ context.Context, _ any, req *mcp.UnsubscribeRequest, _ *mcp.EmptyResult) {
		s.subs.mu.Lock()
		delete(s.subs.state, req.Params.URI)
		s.subs.mu.Unlock()
	})
	s.srv.AddResourceTemplate(mcp.NewResourceTemplate("run://{id}", "Run",
		mcp.WithTemplateDescription("A run you (or your sub-agents) spawned: state, result, usage and its announce once it ended, as JSON."),
		mcp.WithTemplateMIMEType("application/json")), s.readRun)
	s.srv.AddPrompt(mcp.NewPrompt("subagents",
		mcp.WithPromptDescription("The table of your sub-agents: active ones and those that finished recently, with their state, runtime and run id."),
		mcp.WithArgument("recentMinutes", mcp.ArgumentDescription("also show runs that ended in the last N minutes (default 30)")),
	), s.subagentsPrompt)
}

// resourceTool is the tool whose rights a resource needs: a session://
// transcript is what sessions_history shows, a run:// what spawn_status
// shows. Denying the tool denies the resource, so resources never bypass
// tools.allow/tools.deny.
func resourceTool(uri string) string {
	if strings.HasPrefix(uri, "run://") {
		return "spawn_status"
	}
	return "sessions_history"
}

// resourceRights refuses a resource whose tool the caller may not call.
func (s *Server) resourceRights(c policy.Caller, uri string) error {
	tool := resourceTool(uri)
	class := policy.ClassRead
	if t, ok := s.reg.Get(tool); ok {
		class = t.Class
	}
	if d := s.reg.Env().Policy.ToolDecision(c, tool, class); !d.Allowed() {
		return fmt.Errorf("forbidden: %s (this resource shows what %s shows) [rule %s]", d.Message, tool, d.Rule)
	}
	return nil
}

// fingerprint is a resource's current state for change detection.
func (s *Server) fingerprint(ctx context.Context, uri string) (string, error) {
	env := s.reg.Env()
	if err := s.resourceRights(s.caller, uri); err != nil {
		return "", err
	}
	switch {
	case strings.HasPrefix(uri, "session://"):
		key := policy.ResolveKey(s.caller, strings.TrimPrefix(uri, "session://"))
		if d := env.Policy.Access(ctx, s.caller, key); !d.Allowed() {
			return "", errors.New(d.Message)
		}
		sess, err := env.Store.GetSession(ctx, key)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("%d/%s/%d", sess.MessageCount, sess.Status, sess.ArchivedAt), nil
	case strings.HasPrefix(uri, "run://"):
		info, err := tools.RunResource(ctx, env, s.caller, strings.TrimPrefix(uri, "run://"))
		if err != nil {
			return "", err
		}
		return info.Status + "/" + strconv.Itoa(info.Iterations), nil
	}
	return "", fmt.Errorf("unknown resource %s", uri)
}

// pushResourceUpdates sends notifications/resources/updated for every
// subscribed resource whose state changed (called by the notifier, on
// events and every heartbeat).
func (s *Server) pushResourceUpdates(ctx context.Context) {
	sess := s.lastSession()
	if sess == nil || s.subs == nil {
		return
	}
	s.subs.mu.Lock()
	uris := make([]string, 0, len(s.subs.state))
	for u := range s.subs.state {
		uris = append(uris, u)
	}
	s.subs.mu.Unlock()
	for _, u := range uris {
		fp, err := s.fingerprint(ctx, u)
		if err != nil {
			continue
		}
		s.subs.mu.Lock()
		old, ok := s.subs.state[u]
		if ok {
			s.subs.state[u] = fp
		}
		s.subs.mu.Unlock()
		if ok && old != fp {
			if err := s.srv.SendNotificationToSpecificClient(sess.SessionID(), "notifications/resources/updated", map[string]any{"uri": u}); err != nil {
				s.log.Debug("resource update not sent", "uri", u, "err", err)
			}
		}
	}
}

func (s *Server) readRun(ctx context.Context, req mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
	if err := s.resourceRights(s.caller, req.Params.URI); err != nil {
		return nil, err
	}
	info, err := tools.RunResource(ctx, s.reg.Env(), s.caller, strings.TrimPrefix(req.Params.URI, "run://"))
	if err != nil {
		var den *policy.Denied
		if errors.As(err, &den) {
			return nil, fmt.Errorf("forbidden: %s [rule %s]", den.Decision.Message, den.Decision.Rule)
		}
		return nil, err
	}
	body, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return nil, err
	}
	return []mcp.ResourceContents{mcp.TextResourceContents{URI: req.Params.URI, MIMEType: "application/json", Text: string(body)}}, nil
}

func (s *Server) subagentsPrompt(ctx context.Context, req mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
	args := map[string]any{"action": "list"}
	if v := req.Params.Arguments["recentMinutes"]; v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("recentMinutes: %q is not a whole number of minutes", v)
		}
		args["recentMinutes"] = n
	}
	raw, _ := json.Marshal(args)
	res := s.reg.Call(ctx, s.caller, nil, "subagents", raw, nil)
	if res.IsError {
		return nil, errors.New(res.Text)
	}
	return mcp.NewGetPromptResult("Your sub-agents", []mcp.PromptMessage{
		mcp.NewPromptMessage(mcp.RoleUser, mcp.NewTextContent("Here are my sub-agents (active and recent). Summarise their state and say which need attention.\n\n"+res.Text)),
	}), nil
}

// addSessionResources lists the sessions visible to the client as resources.
func (s *Server) addSessionResources(ctx context.Context, _ any, _ *mcp.ListResourcesRequest, res *mcp.ListResourcesResult) {
	if res == nil {
		return
	}
	env := s.reg.Env()
	if s.resourceRights(s.caller, "session://") != nil {
		return // transcripts are not readable by this caller: none listed
	}
	n := 0
	err := env.Store.ListSessions(ctx, store.ListFilter{}, func(sess *store.Session) bool {
		if !env.Policy.Access(ctx, s.caller, sess.Key).Allowed() {
			return true
		}
		name := sess.Key
		desc := fmt.Sprintf("%s session of agent %s, %d messages", sess.Kind, sess.AgentID, sess.MessageCount)
		if sess.Label != "" {
			desc = sess.Label + ": " + desc
		}
		res.Resources = append(res.Resources, mcp.NewResource(tools.SessionURI(sess.Key), name,
			mcp.WithResourceDescription(desc), mcp.WithMIMEType("application/json")))
		n++
		return n < 500
	})
	if err != nil {
		s.log.Error("list session resources", "err", err)
	}
}

// SessionResource is the JSON of a session:// resource.
type SessionResource struct {
	Session  tools.SessionInfo      `json:"session"`
	Messages []tools.HistoryMessage `json:"messages"`
}

func (s *Server) readSession(ctx context.Context, req mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
	if err := s.resourceRights(s.caller, req.Params.URI); err != nil {
		return nil, err
	}
	key := strings.TrimPrefix(req.Params.URI, "session://")
	key = policy.ResolveKey(s.caller, key)
	env := s.reg.Env()
	if d := env.Policy.Access(ctx, s.caller, key); !d.Allowed() {
		return nil, fmt.Errorf("forbidden: %s [rule %s]", d.Message, d.Rule)
	}
	sess, err := env.Store.GetSession(ctx, key)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("session %s not found (resources/list shows the sessions you can read)", key)
	}
	if err != nil {
		return nil, err
	}
	msgs, err := env.Store.Transcript(ctx, key)
	if err != nil {
		return nil, err
	}
	body, err := json.MarshalIndent(SessionResource{Session: tools.Info(sess), Messages: tools.Messages(msgs)}, "", "  ")
	if err != nil {
		return nil, err
	}
	return []mcp.ResourceContents{mcp.TextResourceContents{URI: req.Params.URI, MIMEType: "application/json", Text: string(body)}}, nil
}
