package store

import (
	"context"
	"database/sql"
	"errors"
)

// TopicHTTPSessions wakes (PostgreSQL) the instances holding state of an
// HTTP session that was deleted: they drop it at once, not at their next
// sweep.
const TopicHTTPSessions = "http_sessions"

// HTTPSession is an MCP Streamable HTTP session (Mcp-Session-Id) as every
// HTTP instance on the database sees it: who it belongs to (the token's
// principal, never the token), what initialize negotiated, and when it was
// created and last used (unix ms).
type HTTPSession struct {
	ID              string
	Principal       string // the token's name
	AgentID         string
	Preset          string
	OwnSession      string
	ProtocolVersion string
	ClientInfo      string // JSON of initialize's clientInfo ("" until initialize ran)
	Capabilities    string // JSON of initialize's client capabilities
	CreatedAt       int64
	LastSeen        int64
}

// CreateHTTPSession records a new session unless max sessions seen at or
// after liveAfter already exist (counted across every instance, in the
// same write transaction, so two instances cannot both take the last
// slot: on PostgreSQL the serializable transaction is retried). It reports whether the session was created.
func (s *Store) CreateHTTPSession(ctx context.Context, h HTTPSession, max int, liveAfter int64) (bool, error) {
	var n int64
	err := s.Tx(ctx, func(tx *sql.Tx) error {
		n = 0
		var live int
		if err := s.queryRow(ctx, tx, `SELECT count(*) FROM http_sessions WHERE last_seen >= ?`, liveAfter).Scan(&live); err != nil {
			return err
		}
		if live >= max {
			return nil
		}
		if _, err := s.exec(ctx, tx, `INSERT INTO http_sessions (id, principal, agent_id, preset, own_session,
			protocol_version, client_info, capabilities, created_at, last_seen) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			h.ID, h.Principal, h.AgentID, h.Preset, h.OwnSession, h.ProtocolVersion, h.ClientInfo, h.Capabilities, h.CreatedAt, h.LastSeen); err != nil {
			return err
		}
		n = 1
		return nil
	})
	return n == 1, err
}

// HTTPSessionByID returns session id, or ErrNotFound.
func (s *Store) HTTPSessionByID(ctx context.Context, id string) (HTTPSession, error) {
	var h HTTPSession
	err := s.readRow(ctx, `SELECT id, principal, agent_id, preset, own_session, protocol_version, client_info, capabilities, created_at, last_seen
		FROM http_sessions WHERE id = ?`, id).Scan(&h.ID, &h.Principal, &h.AgentID, &h.Preset, &h.OwnSession,
		&h.ProtocolVersion, &h.ClientInfo, &h.Capabilities, &h.CreatedAt, &h.LastSeen)
	if errors.Is(err, sql.ErrNoRows) {
		return h, ErrNotFound
	}
	return h, err
}

// TouchHTTPSessions marks sessions used at (never moving last_seen back).
func (s *Store) TouchHTTPSessions(ctx context.Context, ids []string, at int64) error {
	if len(ids) == 0 {
		return nil
	}
	return s.Tx(ctx, func(tx *sql.Tx) error {
		for _, id := range ids {
			if _, err := s.exec(ctx, tx, `UPDATE http_sessions SET last_seen = ? WHERE id = ? AND last_seen < ?`, at, id, at); err != nil {
				return err
			}
		}
		return nil
	})
}

// DeleteHTTPSession ends session id for every instance; false when it was
// already gone.
func (s *Store) DeleteHTTPSession(ctx context.Context, id string) (bool, error) {
	var n int64
	err := s.Tx(ctx, func(tx *sql.Tx) error {
		n = 0
		res, err := s.exec(ctx, tx, `DELETE FROM http_sessions WHERE id = ?`, id)
		if err != nil {
			return err
		}
		if n, err = res.RowsAffected(); err != nil || n == 0 {
			return err
		}
		return s.Notify(ctx, tx, TopicHTTPSessions)
	})
	return n == 1, err
}

// ExpireHTTPSessions deletes the sessions last used before before.
func (s *Store) ExpireHTTPSessions(ctx context.Context, before int64) error {
	return s.Tx(ctx, func(tx *sql.Tx) error {
		_, err := s.exec(ctx, tx, `DELETE FROM http_sessions WHERE last_seen < ?`, before)
		return err
	})
}

// LiveHTTPSessions lists the ids of the sessions used at or after
// liveAfter (every instance's).
func (s *Store) LiveHTTPSessions(ctx context.Context, liveAfter int64) ([]string, error) {
	rows, err := s.readRows(ctx, `SELECT id FROM http_sessions WHERE last_seen >= ?`, liveAfter)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		out = append(out, id)
	}
	return out, rows.Err()
}
