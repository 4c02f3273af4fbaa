package mcp

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/sessionplane/sessionplane/runtime/store"
	"github.com/sessionplane/sessionplane/tools"
)

// announced is called when an announce was written (here, or found by the
// heartbeat's poll when requester is ""): it wakes the notifier, which
// pushes a logging notification to the client for announces addressed to
// it. Many announces at once coalesce into one claim. Best effort: the
// durable delivery is the prefix on the next tool result.
func (s *Server) announced(requester string) {
	if requester != "" && requester != s.caller.Key {
		return
	}
	select {
	case s.wake <- struct{}{}:
	default: // a wake-up is already pending
	}
}

// notifier owns the announce notifications: it runs until Close.
func (s *Server) notifier() {
	defer s.notifyWG.Done()
	for {
		select {
		case <-s.quit:
			return
		case <-s.wake:
		}
		s.pushAnnounces()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		s.pushDeliveries(ctx)
		s.pushResourceUpdates(ctx)
		cancel()
	}
}

func (s *Server) pushAnnounces() {
	sess := s.lastSession()
	if sess == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	anns, err := s.reg.Env().Store.ClaimNotifications(ctx, s.caller.Key)
	if err != nil || len(anns) == 0 {
		return
	}
	for _, a := range anns {
		s.notice(sess, "sessionplane.announce", map[string]any{"runId": a.RunID, "status": a.Status, "text": a.Body})
	}
}

// notice sends a notifications/message at level notice. These are events
// the client must see (announces, delivered messages), so they are sent
// whatever logging/setLevel said: mcp-go would otherwise drop everything
// below "error" for a client that never set a level, which is most of them.
func (s *Server) notice(sess server.ClientSession, logger string, data map[string]any) {
	params := map[string]any{"level": mcp.LoggingLevelNotice, "logger": logger, "data": data}
	if err := s.srv.SendNotificationToSpecificClient(sess.SessionID(), "notifications/message", params); err != nil {
		s.log.Debug("notification not sent", "logger", logger, "err", err)
	}
}

// delivered is told that a message was delivered to an MCP client's
// session; when that is this server's client, the notifier tells it.
func (s *Server) delivered(key string) {
	if key == s.caller.Key {
		s.announced(key)
	}
}

// markSeen records, once, where the client's transcript stands when it
// connects: later deliveries are news to it.
func (s *Server) markSeen(ctx context.Context) {
	s.seenMu.Lock()
	defer s.seenMu.Unlock()
	if s.seenInit {
		return
	}
	if cur, err := s.reg.Env().Store.GetSession(context.WithoutCancel(ctx), s.caller.Key); err == nil {
		s.seenSeq, s.seenInit = int64(cur.MessageCount), true
	}
}

// pushDeliveries tells the client about messages other sessions delivered
// to its session since it last looked — sent through this process or any
// other on the same database (the heartbeat wakes the notifier every 2 s):
// a notifications/message and a resource update for session://<key>.
func (s *Server) pushDeliveries(ctx context.Context) {
	sess := s.lastSession()
	if sess == nil {
		return
	}
	st := s.reg.Env().Store
	s.seenMu.Lock()
	defer s.seenMu.Unlock()
	if !s.seenInit {
		return
	}
	msgs, err := st.MessagesAfter(ctx, s.caller.Key, s.seenSeq)
	if err != nil {
		return
	}
	var from []string
	for _, m := range msgs {
		s.seenSeq = max(s.seenSeq, m.Seq)
		if m.Role != store.RoleAssistant && m.Role != store.RoleTool && m.Trust == store.TrustInterSession && strings.HasPrefix(m.Content.Text, "[From: ") {
			sender := strings.TrimPrefix(m.Content.Text, "[From: ")
			if i := strings.IndexByte(sender, ']'); i >= 0 {
				sender = sender[:i]
			}
			from = append(from, sender)
		}
	}
	if len(from) == 0 {
		return
	}
	s.notice(sess, "sessionplane.message", map[string]any{
		"session": s.caller.Key, "from": from,
		"text": fmt.Sprintf("%d message(s) were delivered to your session; read them with sessions_history or the resource %s", len(from), tools.SessionURI(s.caller.Key)),
	})
	if err := s.srv.SendNotificationToSpecificClient(sess.SessionID(), "notifications/resources/updated", map[string]any{"uri": tools.SessionURI(s.caller.Key)}); err != nil {
		s.log.Debug("resource update not sent", "err", err)
	}
}
