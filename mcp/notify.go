package mcp

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/sessionplane/sessionplane/runtime/store"
	"github.com/sessionplane/sessionplane/tools"
)

// announced is called when an announce was written (here, or found by the
// heartbeat's poll when requester is ""): it wakes the notifier, which
// pushes a logging notification to the connections of the principal that
// owns the requester session, and to no other. Many announces at once
// coalesce into one claim. Best effort: the durable delivery is the prefix
// on the next tool result.
func (s *Server) announced(requester string) {
	if requester != "" {
		if _, ok := s.owns(requester); !ok {
			return
		}
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
		case <-s.push.ready:
			s.sendClaimed()
			continue
		case <-s.wake:
		}
		s.sendClaimed()
		for _, o := range s.ownerList() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			s.pushAnnounces(ctx, o)
			s.pushDeliveries(ctx, o)
			s.pushResourceUpdates(ctx, o)
			cancel()
		}
		s.notifyPasses.Add(1)
	}
}

// pushAnnounces claims the announces addressed to o's own session for
// notification and, once the claim committed, has the notifier send them
// to o's connections (only when it has one: otherwise they wait for the
// next tool result, here or in another process). The claim is not waited
// for: it commits with the writer's next batch instead of on its own.
func (s *Server) pushAnnounces(ctx context.Context, o *owner) {
	if len(s.pushConns(o)) == 0 {
		return
	}
	err := s.reg.Env().Store.ClaimNotificationsAsync(ctx, o.caller.Key, func(anns []store.Announce) { s.push.add(o, anns) })
	if err != nil {
		s.log.Debug("announce notifications not claimed", "requester", o.caller.Key, "err", err)
	}
}

// announcePushes holds announces claimed for notification until the
// notifier sends them (the claim's commit hands them over from the
// store's writer, which must not block).
type announcePushes struct {
	mu    sync.Mutex
	queue []claimedAnnounces
	ready chan struct{} // buffered (1): something is queued
}

type claimedAnnounces struct {
	o    *owner
	anns []store.Announce
}

func (p *announcePushes) add(o *owner, anns []store.Announce) {
	p.mu.Lock()
	p.queue = append(p.queue, claimedAnnounces{o, anns})
	p.mu.Unlock()
	select {
	case p.ready <- struct{}{}:
	default:
	}
}

func (p *announcePushes) take() []claimedAnnounces {
	p.mu.Lock()
	defer p.mu.Unlock()
	q := p.queue
	p.queue = nil
	return q
}

// sendClaimed sends the announces claimed for notification to their
// owners' connections.
func (s *Server) sendClaimed() {
	for _, c := range s.push.take() {
		conns := s.pushConns(c.o)
		for _, a := range c.anns {
			for _, conn := range conns {
				s.notice(conn.sess, "sessionplane.announce", map[string]any{"runId": a.RunID, "status": a.Status, "text": a.Body})
			}
		}
	}
}

// notice sends a notifications/message at level notice. These are events
// the client must see (announces, delivered messages), so they are sent
// whatever logging/setLevel said: mcp-go would otherwise drop everything
// below "error" for a client that never set a level, which is most of them.
func (s *Server) notice(sess server.ClientSession, logger string, data map[string]any) {
	params := map[string]any{"level": mcp.LoggingLevelNotice, "logger": logger, "data": data}
	s.sendTo(sess, "notifications/message", params)
}

// sendTo sends a notification to one connection; a connection that is gone
// is forgotten.
func (s *Server) sendTo(sess server.ClientSession, method string, params map[string]any) {
	err := s.srv.SendNotificationToSpecificClient(sess.SessionID(), method, params)
	if errors.Is(err, server.ErrSessionNotFound) {
		s.forgetConn(sess.SessionID())
	}
	if err != nil {
		s.log.Debug("notification not sent", "method", method, "err", err)
	}
}

// delivered is told that a message was delivered to an MCP client's
// session; when a principal of this process owns it, the notifier tells
// that principal's connections.
func (s *Server) delivered(key string) {
	if _, ok := s.owns(key); ok {
		s.announced(key)
	}
}

// pushDeliveries tells o's connections about messages other sessions
// delivered to its own session since they last looked — sent through this
// process or any other on the same database (the heartbeat wakes the
// notifier every 2 s): a notifications/message and a resource update for
// session://<key>.
func (s *Server) pushDeliveries(ctx context.Context, o *owner) {
	conns := s.pushConns(o)
	if len(conns) == 0 {
		return
	}
	st := s.reg.Env().Store
	key := o.caller.Key
	o.mu.Lock()
	if !o.seenInit {
		o.mu.Unlock()
		return
	}
	after := o.seenSeq
	o.mu.Unlock()
	last, texts, err := st.DeliveredAfter(ctx, key, after)
	if err != nil {
		return
	}
	var from []string
	for _, text := range texts {
		if sender, ok := strings.CutPrefix(text, "[From: "); ok {
			if i := strings.IndexByte(sender, ']'); i >= 0 {
				sender = sender[:i]
			}
			from = append(from, sender)
		}
	}
	o.mu.Lock()
	news := last > o.seenSeq
	o.seenSeq = max(o.seenSeq, last)
	o.mu.Unlock()
	if len(from) == 0 || !news {
		return
	}
	for _, c := range conns {
		s.notice(c.sess, "sessionplane.message", map[string]any{
			"session": key, "from": from,
			"text": fmt.Sprintf("%d message(s) were delivered to your session; read them with sessions_history or the resource %s", len(from), tools.SessionURI(key)),
		})
		s.sendTo(c.sess, "notifications/resources/updated", map[string]any{"uri": tools.SessionURI(key)})
	}
}

// parked is told that a background run parked for an approval: the
// principal owning requester (if it is connected here) gets a
// sessionplane.approval notice, and the first of its connections whose
// client supports elicitation is asked to decide (in the background: the
// run stays parked until an answer, and approvals {action: approve|deny}
// from any process decides it just the same). Best effort: approvals
// {action: list} shows what waits, from any process.
func (s *Server) parked(requester, approvalID, text string) {
	o, ok := s.owns(requester)
	if !ok {
		return
	}
	asked := false
	for _, c := range s.pushConns(o) {
		s.notice(c.sess, "sessionplane.approval", map[string]any{"text": text, "approval": approvalID})
		if !asked && approvalID != "" && canElicit(c.sess) {
			asked = true
			s.askApproval(c.sess, requester, approvalID, text)
		}
	}
}

// canElicit reports whether a client declared the elicitation capability.
func canElicit(sess server.ClientSession) bool {
	ci, ok := sess.(server.SessionWithClientInfo)
	return ok && ci.GetClientCapabilities().Elicitation != nil
}

// approvalAskTimeout bounds how long an elicitation for a parked run waits
// for the human; the approval itself stays pending until park_minutes.
const approvalAskTimeout = 10 * time.Minute

// askApproval asks the human through elicitation and decides the approval
// with the answer: accept with approve=true approves, any other accept or
// a decline denies, cancel (or no answer) leaves it pending. The goroutine
// belongs to the server: Close cancels it and waits for it.
func (s *Server) askApproval(sess server.ClientSession, by, id, text string) {
	s.notifyWG.Add(1)
	go func() {
		defer s.notifyWG.Done()
		ctx, cancel := context.WithTimeout(context.Background(), approvalAskTimeout)
		defer cancel()
		go func() { // Close ends the wait
			select {
			case <-s.quit:
				cancel()
			case <-ctx.Done():
			}
		}()
		res, err := s.srv.RequestElicitation(s.srv.WithContext(ctx, sess), mcp.ElicitationRequest{Params: mcp.ElicitationParams{
			Message: text,
			RequestedSchema: map[string]any{
				"type": "object",
				"properties": map[string]any{
					"approve": map[string]any{"type": "boolean", "title": "Approve", "description": "Let the waiting run make this call"},
				},
				"required": []string{"approve"},
			},
		}})
		if err != nil {
			s.log.Debug("approval not asked by elicitation", "approval", id, "err", err)
			return
		}
		approve := false
		switch res.Action {
		case mcp.ElicitationResponseActionCancel:
			return // no decision: it stays pending
		case mcp.ElicitationResponseActionAccept:
			if m, ok := res.Content.(map[string]any); ok {
				approve, _ = m["approve"].(bool)
			}
		}
		dctx, dcancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer dcancel()
		if err := s.runs.Decide(dctx, id, approve, by); err != nil {
			s.log.Info("approval answered by elicitation but not decided", "approval", id, "err", err)
		}
	}()
}
