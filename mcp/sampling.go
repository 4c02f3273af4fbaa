package mcp

import (
	"context"
	"errors"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/sessionplane/sessionplane/runtime/provider"
)

// sampler lets "sampling" providers use a connected client's model: the
// connection of the request when the run is part of one, else (a run in the
// background) the latest connection of the only principal of this process.
// With several principals a background run is not routed to any of them:
// one principal's client must never see another's content.
func (s *Server) sampler() provider.Sampler { return &clientSampler{s: s} }

type clientSampler struct{ s *Server }

func (c *clientSampler) RequestSampling(ctx context.Context, req mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) {
	if server.ClientSessionFromContext(ctx) == nil {
		sess, err := c.s.backgroundSession()
		if err != nil {
			return nil, err
		}
		ctx = c.s.srv.WithContext(ctx, sess)
	}
	return c.s.srv.RequestSampling(ctx, req)
}

// SupportsTools reports whether the client declared sampling.tools.
func (c *clientSampler) SupportsTools(ctx context.Context) bool {
	sess := server.ClientSessionFromContext(ctx)
	if sess == nil {
		sess, _ = c.s.backgroundSession()
	}
	ci, ok := sess.(server.SessionWithClientInfo)
	if !ok {
		return false
	}
	caps := ci.GetClientCapabilities()
	return caps.Sampling != nil && caps.Sampling.Tools != nil
}

// backgroundSession is the connection a run outside any request samples
// through: the latest of the only principal that has connections, when
// this process serves a single principal.
func (s *Server) backgroundSession() (server.ClientSession, error) {
	s.ownersMu.Lock()
	served := s.served
	s.ownersMu.Unlock()
	if len(served) > 1 {
		return nil, errors.New("sampling from a run in the background is not routed when the server has several principals (HTTP tokens): use a model provider, or run the turn inside a request (blocking spawn_agent, waited sessions_send)")
	}
	if len(served) == 1 {
		if sess := served[0].lastSession(); sess != nil {
			return sess, nil
		}
	}
	return nil, errors.New("no MCP client is connected to answer sampling/createMessage")
}
