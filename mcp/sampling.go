package mcp

import (
	"context"
	"errors"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/sessionplane/sessionplane/runtime/provider"
)

// sampler lets "sampling" providers use the connected client's model. It
// remembers the client session of the latest request so that runs in the
// background (outside any request) can still reach it.
func (s *Server) sampler() provider.Sampler { return &clientSampler{s: s} }

type clientSampler struct{ s *Server }

func (c *clientSampler) RequestSampling(ctx context.Context, req mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) {
	if server.ClientSessionFromContext(ctx) == nil {
		sess := c.s.lastSession()
		if sess == nil {
			return nil, errors.New("no MCP client is connected to answer sampling/createMessage")
		}
		ctx = c.s.srv.WithContext(ctx, sess)
	}
	return c.s.srv.RequestSampling(ctx, req)
}

// SupportsTools reports whether the client declared sampling.tools.
func (c *clientSampler) SupportsTools(ctx context.Context) bool {
	sess := server.ClientSessionFromContext(ctx)
	if sess == nil {
		sess = c.s.lastSession()
	}
	ci, ok := sess.(server.SessionWithClientInfo)
	if !ok {
		return false
	}
	caps := ci.GetClientCapabilities()
	return caps.Sampling != nil && caps.Sampling.Tools != nil
}

func (s *Server) rememberSession(ctx context.Context) {
	if sess := server.ClientSessionFromContext(ctx); sess != nil {
		s.sessMu.Lock()
		s.sess = sess
		s.sessMu.Unlock()
	}
}

func (s *Server) lastSession() server.ClientSession {
	s.sessMu.Lock()
	defer s.sessMu.Unlock()
	return s.sess
}
