package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/google/uuid"
)

// Session kinds.
const (
	KindMain     = "main"
	KindSubagent = "subagent"
	KindCron     = "cron"
	KindOther    = "other"
)

// Session is one row of the sessions table.
type Session struct {
	Key          string
	ID           string // stable uuid of the session
	AgentID      string
	Kind         string
	Label        string
	ParentKey    string
	SpawnedBy    string
	Depth        int
	Model        string
	ModelServed  string // the model the provider said answered last ("" before any answer)
	Thinking     string
	Preset       string
	Status       string
	MessageCount int
	TokensIn     int64
	TokensOut    int64
	CostUSD      float64
	CreatedAt    int64
	UpdatedAt    int64
	ArchivedAt   int64 // 0 = not archived
	// ForkedFrom is the session this one's transcript was copied from
	// (sessions_fork, spawn context "fork"); ForkedAtSeq the last seq
	// copied. Creating a session with ForkedFrom set copies the source's
	// messages up to ForkedAtSeq in the same transaction (see ForkSession).
	ForkedFrom  string
	ForkedAtSeq int64
}

// KindOf derives a session's kind from its key.
func KindOf(key string) string {
	switch {
	case strings.HasPrefix(key, "cron:"):
		return KindCron
	case strings.HasPrefix(key, "agent:") && strings.Contains(key, ":subagent:"):
		return KindSubagent
	case strings.HasPrefix(key, "agent:") && strings.Count(key, ":") == 2 && strings.HasSuffix(key, ":main"):
		return KindMain
	default:
		return KindOther
	}
}

// AgentOf returns the agent id of an agent:<id>:... key, or "" for other keys.
func AgentOf(key string) string {
	if !strings.HasPrefix(key, "agent:") {
		return ""
	}
	rest := key[len("agent:"):]
	if i := strings.IndexByte(rest, ':'); i > 0 {
		return rest[:i]
	}
	return ""
}

const sessionCols = `key, session_id, agent_id, kind, label, COALESCE(parent_key,''), spawned_by, depth, model, thinking,
	preset, status, message_count, tokens_in, tokens_out, cost_usd, created_at, updated_at, COALESCE(archived_at, 0), model_served,
	COALESCE(forked_from, ''), forked_at_seq`

func scanSession(row interface{ Scan(...any) error }) (*Session, error) {
	var s Session
	if err := row.Scan(sessionDests(&s)...); err != nil {
		return nil, err
	}
	return &s, nil
}

// sessionDests are the scan destinations of sessionCols, in its order.
func sessionDests(s *Session) []any {
	return []any{&s.Key, &s.ID, &s.AgentID, &s.Kind, &s.Label, &s.ParentKey, &s.SpawnedBy, &s.Depth, &s.Model, &s.Thinking,
		&s.Preset, &s.Status, &s.MessageCount, &s.TokensIn, &s.TokensOut, &s.CostUSD, &s.CreatedAt, &s.UpdatedAt, &s.ArchivedAt, &s.ModelServed,
		&s.ForkedFrom, &s.ForkedAtSeq}
}

// EnsureSession creates the session when it does not exist and returns the
// stored row. Fields of an existing row are left as they are. Kind and
// AgentID are derived from the key when empty.
func (s *Store) EnsureSession(ctx context.Context, in Session) (*Session, error) {
	if in.Key == "" {
		return nil, errors.New("store: session key is empty")
	}
	now := s.nowMS()
	err := s.Tx(ctx, func(tx *sql.Tx) error { return s.ensureSessionTx(ctx, tx, &in, now) })
	if err != nil {
		return nil, fmt.Errorf("store: ensure session %q: %w", in.Key, err)
	}
	return s.GetSession(ctx, in.Key)
}

// NewSession fills a session's derived fields (kind and agent from the
// key, a new stable id, status idle) without writing it.
func NewSession(in Session) Session {
	if in.Kind == "" {
		in.Kind = KindOf(in.Key)
	}
	if in.AgentID == "" {
		in.AgentID = AgentOf(in.Key)
	}
	if in.ID == "" {
		in.ID = uuid.Must(uuid.NewV7()).String() // time-ordered: appended to the session_id index
	}
	if in.Status == "" {
		in.Status = "idle"
	}
	return in
}

func (s *Store) ensureSessionTx(ctx context.Context, tx *sql.Tx, in *Session, now int64) error {
	_, err := s.createSessionTx(ctx, tx, in, now, "", nil)
	return err
}

// createSessionTx inserts in (its derived fields filled, see NewSession)
// unless a session with its key exists: created says which. status, when
// not "", is the new row's status instead of in.Status. msgs, all of them
// in's, are counted in the new row (message_count, tokens, cost) for a
// caller that inserts them in tx with seqs from 1 (appendFromTx), so the
// row is written once; they are not counted when the session existed. A
// new session forked from another gets its transcript copy here.
func (s *Store) createSessionTx(ctx context.Context, tx *sql.Tx, in *Session, now int64, status string, msgs []Message) (created bool, err error) {
	*in = NewSession(*in)
	if status == "" {
		status = in.Status
	}
	var parent any
	if in.ParentKey != "" {
		parent = in.ParentKey
	}
	var tokIn, tokOut int64
	var cost float64
	for _, m := range msgs {
		tokIn, tokOut, cost = tokIn+m.TokensIn, tokOut+m.TokensOut, cost+m.CostUSD
	}
	res, err := s.exec(ctx, tx, `INSERT INTO sessions (key, session_id, agent_id, kind, label, parent_key, spawned_by, depth,
		model, thinking, preset, status, message_count, tokens_in, tokens_out, cost_usd, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO NOTHING`,
		in.Key, in.ID, in.AgentID, in.Kind, in.Label, parent, in.SpawnedBy, in.Depth,
		in.Model, in.Thinking, in.Preset, status, len(msgs), tokIn, tokOut, cost, now, now)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	if err != nil || n != 1 {
		return false, err
	}
	if in.ForkedFrom != "" {
		return true, s.copyTranscriptTx(ctx, tx, in.ForkedFrom, in.Key, in.ForkedAtSeq)
	}
	return true, nil
}

// GetSession returns the session with that key, or ErrNotFound.
func (s *Store) GetSession(ctx context.Context, key string) (*Session, error) {
	row := s.readRow(briefRead(ctx), "SELECT "+sessionCols+" FROM sessions WHERE key = ?", key)
	sess, err := scanSession(row)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("session %q: %w", key, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("store: get session %q: %w", key, s.fault(err))
	}
	return sess, nil
}

// ListFilter selects sessions. Zero values select everything.
type ListFilter struct {
	Text            string   // case-insensitive substring of key or label
	Kinds           []string // any of
	Status          string
	UpdatedSince    int64 // ms; 0 = any
	IncludeArchived bool
	AgentID         string
	// Brief reads only listCols, what a session list shows: the sessions
	// yielded have no Depth, Thinking, Preset, ModelServed, ForkedFrom nor
	// ForkedAtSeq (every column read costs its name and declared type on
	// every query, as modernc reads them).
	Brief bool
}

// listCols are the columns of a session a list shows (ListFilter.Brief):
// sessionCols without depth, thinking, preset, model_served, forked_from
// and forked_at_seq.
const listCols = `key, session_id, agent_id, kind, label, COALESCE(parent_key,''), spawned_by, model, status, message_count,
	tokens_in, tokens_out, cost_usd, created_at, updated_at, COALESCE(archived_at, 0)`

// listDests are the scan destinations of listCols, in its order.
func listDests(s *Session) []any {
	return []any{&s.Key, &s.ID, &s.AgentID, &s.Kind, &s.Label, &s.ParentKey, &s.SpawnedBy, &s.Model, &s.Status, &s.MessageCount,
		&s.TokensIn, &s.TokensOut, &s.CostUSD, &s.CreatedAt, &s.UpdatedAt, &s.ArchivedAt}
}

// ListSessions streams the sessions matching f, most recently updated
// first, to yield until it returns false. The caller applies policy and
// the limit, so policy filters before the limit.
func (s *Store) ListSessions(ctx context.Context, f ListFilter, yield func(*Session) bool) error {
	var where []string
	var args []any
	if f.Text != "" {
		where = append(where, "(instr(lower(key), lower(?)) > 0 OR instr(lower(label), lower(?)) > 0)")
		args = append(args, f.Text, f.Text)
	}
	whereIn(&where, &args, "kind", f.Kinds)
	if f.Status != "" {
		where = append(where, "status = ?")
		args = append(args, f.Status)
	}
	if f.UpdatedSince > 0 {
		where = append(where, "updated_at >= ?")
		args = append(args, f.UpdatedSince)
	}
	if !f.IncludeArchived {
		where = append(where, "archived_at IS NULL")
	}
	if f.AgentID != "" {
		where = append(where, "agent_id = ?")
		args = append(args, f.AgentID)
	}
	cols, dests := sessionCols, sessionDests
	if f.Brief {
		cols, dests = listCols, listDests
	}
	q := "SELECT " + cols + " FROM sessions"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY updated_at DESC, key"
	rows, err := s.readRows(briefRead(ctx), q, args...)
	if err != nil {
		return fmt.Errorf("store: list sessions: %w", s.fault(err))
	}
	defer rows.Close()
	for rows.Next() {
		if err := ctx.Err(); err != nil { // the query does not watch ctx (briefRead): stop here
			return err
		}
		var sess Session
		if err := rows.Scan(dests(&sess)...); err != nil {
			return fmt.Errorf("store: list sessions: %w", s.fault(err))
		}
		if !yield(&sess) {
			return nil
		}
	}
	return s.fault(rows.Err())
}

// Children returns the keys of sessions whose parent is key.
func (s *Store) Children(ctx context.Context, key string) ([]string, error) {
	rows, err := s.readRows(ctx, "SELECT key FROM sessions WHERE parent_key = ? ORDER BY created_at, key", key)
	if err != nil {
		return nil, fmt.Errorf("store: children of %q: %w", key, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

// AddUsage adds token counts and cost to a session with SQL increments.
func (s *Store) AddUsage(ctx context.Context, key string, in, out int64, cost float64) error {
	return s.Tx(ctx, func(tx *sql.Tx) error {
		_, err := s.exec(ctx, tx, `UPDATE sessions SET tokens_in = tokens_in + ?, tokens_out = tokens_out + ?,
			cost_usd = cost_usd + ?, updated_at = ? WHERE key = ?`, in, out, cost, s.nowMS(), key)
		return err
	})
}

// SetStatus records a session's status (idle, running, done, ...).
func (s *Store) SetStatus(ctx context.Context, key, status string) error {
	return s.Tx(ctx, func(tx *sql.Tx) error {
		_, err := s.exec(ctx, tx, "UPDATE sessions SET status = ?, updated_at = ? WHERE key = ?", status, s.nowMS(), key)
		return err
	})
}

// Archive marks a session archived (its transcript is kept).
func (s *Store) Archive(ctx context.Context, key string) error {
	return s.Tx(ctx, func(tx *sql.Tx) error {
		_, err := s.exec(ctx, tx, "UPDATE sessions SET archived_at = ? WHERE key = ? AND archived_at IS NULL", s.nowMS(), key)
		return err
	})
}

// GetSessionByID returns the session whose stable id is id, or ErrNotFound.
func (s *Store) GetSessionByID(ctx context.Context, id string) (*Session, error) {
	row := s.readRow(ctx, "SELECT "+sessionCols+" FROM sessions WHERE session_id = ?", id)
	sess, err := scanSession(row)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("session id %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("store: get session id %q: %w", id, err)
	}
	return sess, nil
}

// Owner returns the agent a session belongs to; ok is false when the
// session does not exist.
func (s *Store) Owner(ctx context.Context, key string) (string, bool, error) {
	var agent string
	err := s.readRow(briefRead(ctx), "SELECT agent_id FROM sessions WHERE key = ?", key).Scan(&agent)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("store: owner of %q: %w", key, err)
	}
	return agent, true, nil
}

// IsDescendant reports whether key's parent chain reaches ancestor.
func (s *Store) IsDescendant(ctx context.Context, ancestor, key string) (bool, error) {
	var n int
	err := s.readRow(briefRead(ctx), `WITH RECURSIVE up(k, p, d) AS (
			SELECT key, parent_key, 0 FROM sessions WHERE key = ?
			UNION ALL SELECT s.key, s.parent_key, up.d + 1 FROM sessions s JOIN up ON s.key = up.p WHERE up.d < 64)
		SELECT count(*) FROM up WHERE p = ?`, key, ancestor).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("store: ancestry of %q: %w", key, err)
	}
	return n > 0, nil
}
