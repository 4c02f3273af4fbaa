package config

import (
	"encoding/hex"
	"fmt"
	"net/url"
	"strings"
)

// OwnSession is the rule that gives every MCP principal its own session:
// an explicit session wins; otherwise an unrestricted principal (no
// preset) of agent a owns agent:a:main and a principal under preset p owns
// agent:a:p. Principals whose policies differ so never share a session,
// and "a caller always sees its own session" cannot show one principal the
// transcript of a less restricted one.
func OwnSession(agent, preset, session string) string {
	switch {
	case session != "":
		return session
	case preset != "":
		return "agent:" + agent + ":" + preset
	default:
		return "agent:" + agent + ":main"
	}
}

// CheckOwnSession reports what is wrong ("" = nothing) with a principal's own session key.
func CheckOwnSession(agent, preset, session string) string {
	if session == "" {
		if preset == "main" {
			return fmt.Sprintf("preset \"main\" would own agent:%s:main, the session of the unrestricted client: set session = \"agent:%s:<name>\" or rename the preset", agent, agent)
		}
		return ""
	}
	if len(session) > 512 {
		return "longer than 512 characters"
	}
	for _, r := range session {
		if r > 0x7e || r <= ' ' {
			return fmt.Sprintf("%q has a space or a character that is not printable ASCII", session)
		}
	}
	prefix := "agent:" + agent + ":"
	name := strings.TrimPrefix(session, prefix)
	if !strings.HasPrefix(session, prefix) || name == "" || strings.Contains(name, ":") {
		return fmt.Sprintf("%q: an own session is agent:%s:<name> (the principal's agent, one name without ':')", session, agent)
	}
	return ""
}

func (c *Config) validateHTTP() []Problem {
	var probs []Problem
	add := func(path, format string, args ...any) {
		probs = append(probs, Problem{Path: path, Line: c.Line(path), Msg: fmt.Sprintf(format, args...)})
	}
	if msg := CheckOwnSession(c.MCP.Agent, c.MCP.Preset, c.MCP.Session); msg != "" {
		add("mcp.session", "%s", msg)
	}
	h := c.MCP.HTTP
	if h.SessionIdleMinutes < 1 || h.SessionIdleMinutes > 7*24*60 {
		add("mcp.http.session_idle_minutes", "must be between 1 and 10080 (default 30), got %d", h.SessionIdleMinutes)
	}
	if h.MaxSessions < 1 || h.MaxSessions > 100000 {
		add("mcp.http.max_sessions", "must be between 1 and 100000 (default 1000), got %d", h.MaxSessions)
	}
	for i, o := range h.AllowedOrigins {
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
			add(fmt.Sprintf("mcp.http.allowed_origins[%d]", i), "%q is not an origin: use scheme://host[:port], e.g. \"http://localhost:3000\"", o)
		}
	}
	names := map[string]bool{}
	owners := map[string]string{} // own session → agent/preset of the first token owning it
	for i, t := range h.Tokens {
		path := fmt.Sprintf("mcp.http.tokens[%d]", i)
		if !validID(t.Name) {
			add(path+".name", "%q: every token needs a name of lower-case letters, digits, '-' or '_' (it names the principal in logs)", t.Name)
		} else if names[t.Name] {
			add(path+".name", "%q is used by another token: names must be unique", t.Name)
		}
		names[t.Name] = true
		switch {
		case t.TokenEnv == "" && t.SHA256 == "":
			add(path, "give token_env (the environment variable holding the token) or sha256 (hex SHA-256 of the token)")
		case t.TokenEnv != "" && t.SHA256 != "":
			add(path, "give token_env or sha256, not both")
		case t.SHA256 != "":
			if b, err := hex.DecodeString(t.SHA256); err != nil || len(b) != 32 {
				add(path+".sha256", "must be 64 hex digits (e.g. the output of: printf %%s \"$TOKEN\" | sha256sum)")
			}
		}
		agent := t.Agent
		if agent == "" {
			agent = c.MCP.Agent
		}
		if !validID(agent) {
			add(path+".agent", "%q is not a valid agent id: use lower-case letters, digits, '-' or '_'", agent)
		}
		if t.Preset != "" {
			if _, ok := c.Agents.Presets[t.Preset]; !ok {
				add(path+".preset", "preset %q is not defined: add [agents.presets.%s] (defined: %s)", t.Preset, t.Preset, keysOf(c.Agents.Presets))
			}
		}
		if msg := CheckOwnSession(agent, t.Preset, t.Session); msg != "" {
			add(path+".session", "%s", msg)
			continue
		}
		own := OwnSession(agent, t.Preset, t.Session)
		who := "agent " + agent + ", preset \"" + t.Preset + "\""
		if prev, ok := owners[own]; ok && prev != who {
			add(path+".session", "own session %s is already owned by a token with %s; principals whose policies differ never share a session: give this token another session", own, prev)
		}
		owners[own] = who
	}
	return probs
}
