package mcp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/sessionplane/sessionplane/policy"
	"github.com/sessionplane/sessionplane/runtime/store"
	"github.com/sessionplane/sessionplane/tools"
)

func (s *Server) addResourceSurface(hooks *server.Hooks) {
	// mcp-go acknowledges resources/subscribe but does not track it: each
	// connection's subscriptions are kept with its principal, with the state
	// last reported, so a change sends notifications/resources/updated to
	// that connection only, checked against that principal's access.
	hooks.AddAfterSubscribe(func(ctx context.Context, _ any, req *mcp.SubscribeRequest, _ *mcp.EmptyResult) {
		uri := req.Params.URI
		_, o, err := s.callerOf(ctx)
		sess := server.ClientSessionFromContext(ctx)
		if err != nil || sess == nil {
			return
		}
		fp, err := s.fingerprint(ctx, o.caller, uri)
		if err != nil {
			s.log.Debug("subscription to a resource the client cannot read ignored", "uri", uri, "err", err)
			return
		}
		o.remember(ctx)
		o.mu.Lock()
		if c := o.conns[sess.SessionID()]; c != nil {
			c.subs[uri] = fp
		}
		o.mu.Unlock()
	})
	hooks.AddAfterUnsubscribe(func(ctx context.Context, _ any, req *mcp.UnsubscribeRequest, _ *mcp.EmptyResult) {
		o, err := s.ownerOf(ctx)
		sess := server.ClientSessionFromContext(ctx)
		if err != nil || sess == nil {
			return
		}
		o.mu.Lock()
		if c := o.conns[sess.SessionID()]; c != nil {
			delete(c.subs, req.Params.URI)
		}
		o.mu.Unlock()
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
func (s *Server) fingerprint(ctx context.Context, caller policy.Caller, uri string) (string, error) {
	env := s.reg.Env()
	if err := s.resourceRights(caller, uri); err != nil {
		return "", err
	}
	switch {
	case strings.HasPrefix(uri, "session://"):
		key := policy.ResolveKey(caller, strings.TrimPrefix(uri, "session://"))
		if d := env.Policy.Access(ctx, caller, key); !d.Allowed() {
			return "", errors.New(d.Message)
		}
		sess, err := env.Store.GetSession(ctx, key)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("%d/%s/%d", sess.MessageCount, sess.Status, sess.ArchivedAt), nil
	case strings.HasPrefix(uri, "run://"):
		info, err := tools.RunResource(ctx, env, caller, strings.TrimPrefix(uri, "run://"))
		if err != nil {
			return "", err
		}
		return info.Status + "/" + strconv.Itoa(info.Iterations), nil
	}
	return "", fmt.Errorf("unknown resource %s", uri)
}

// pushResourceUpdates sends notifications/resources/updated to each of
// o's connections for every resource it subscribed to whose state changed
// (called by the notifier, on events and every heartbeat). A resource the
// principal can no longer read sends nothing.
func (s *Server) pushResourceUpdates(ctx context.Context, o *owner) {
	for _, c := range o.connList() {
		o.mu.Lock()
		uris := make([]string, 0, len(c.subs))
		for u := range c.subs {
			uris = append(uris, u)
		}
		o.mu.Unlock()
		for _, u := range uris {
			fp, err := s.fingerprint(ctx, o.caller, u)
			if err != nil {
				continue
			}
			o.mu.Lock()
			old, ok := c.subs[u]
			if ok {
				c.subs[u] = fp
			}
			o.mu.Unlock()
			if ok && old != fp {
				s.sendTo(c.sess, "notifications/resources/updated", map[string]any{"uri": u})
			}
		}
	}
}

func (s *Server) readRun(ctx context.Context, req mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
	caller, _, err := s.callerOf(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.resourceRights(caller, req.Params.URI); err != nil {
		return nil, err
	}
	info, err := tools.RunResource(ctx, s.reg.Env(), caller, strings.TrimPrefix(req.Params.URI, "run://"))
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
	caller, _, err := s.callerOf(ctx)
	if err != nil {
		return nil, err
	}
	args := map[string]any{"action": "list"}
	if v := req.Params.Arguments["recentMinutes"]; v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("recentMinutes: %q is not a whole number of minutes", v)
		}
		args["recentMinutes"] = n
	}
	raw, _ := json.Marshal(args)
	res := s.reg.Call(ctx, caller, nil, "subagents", raw, nil)
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
	caller, _, err := s.callerOf(ctx)
	if err != nil {
		s.log.Error("resources/list: the connection's principal", "err", err)
		return
	}
	env := s.reg.Env()
	if s.resourceRights(caller, "session://") != nil {
		return // transcripts are not readable by this caller: none listed
	}
	n := 0
	err = env.Store.ListSessions(ctx, store.ListFilter{}, func(sess *store.Session) bool {
		if !env.Policy.Access(ctx, caller, sess.Key).Allowed() {
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
	caller, _, err := s.callerOf(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.resourceRights(caller, req.Params.URI); err != nil {
		return nil, err
	}
	key := policy.ResolveKey(caller, strings.TrimPrefix(req.Params.URI, "session://"))
	env := s.reg.Env()
	if d := env.Policy.Access(ctx, caller, key); !d.Allowed() {
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
