package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
)

// Roles of a message.
const (
	RoleSystem    = "system"
	RoleUser      = "user"
	RoleAssistant = "assistant"
	RoleTool      = "tool"
)

// Trust classes of a message (seed 001).
const (
	TrustControl      = "control_trusted"
	TrustUser         = "user_owned"
	TrustModel        = "model_generated"
	TrustExternal     = "external_untrusted"
	TrustInterSession = "inter_session"
)

// ToolCall is a tool call recorded in an assistant message.
type ToolCall struct {
	ID   string          `json:"id"`
	Name string          `json:"name"`
	Args json.RawMessage `json:"args,omitempty"`
}

// ToolResult is a tool result recorded in a tool message.
type ToolResult struct {
	CallID  string `json:"call_id"`
	Name    string `json:"name"`
	Content string `json:"content"`
	IsError bool   `json:"is_error,omitempty"`
}

// Content is a message's body: text and/or tool calls/results.
type Content struct {
	Text        string       `json:"text,omitempty"`
	ToolCalls   []ToolCall   `json:"tool_calls,omitempty"`
	ToolResults []ToolResult `json:"tool_results,omitempty"`
	// Reasoning is a provider's opaque reasoning state for an assistant
	// turn (kept so it can be sent back with the next request).
	Reasoning json.RawMessage `json:"reasoning,omitempty"`
	// Model is the model the provider said produced an assistant turn
	// (its response's model string), when it named one.
	Model string `json:"model,omitempty"`
}

// Message is one transcript entry.
type Message struct {
	SessionKey string
	Seq        int64
	Role       string
	Content    Content
	Trust      string
	TokensIn   int64
	TokensOut  int64
	CostUSD    float64 // estimated cost of the model call that produced it
	CreatedAt  int64

	// noIndex keeps the message's text out of the full-text index (an
	// announce's copy in the requester's transcript: the child's answer is
	// indexed in the child's session, and indexing its copy would double
	// every hit).
	noIndex bool
}

// IndexText is what the full-text index holds for a message: its text.
// Tool calls and tool results are not indexed, so results that quote other
// sessions (a sessions_history call, say) do not echo them into search.
func (c Content) IndexText() string { return strings.TrimSpace(c.Text) }

func validRole(r string) bool {
	return r == RoleSystem || r == RoleUser || r == RoleAssistant || r == RoleTool
}

func validTrust(t string) bool {
	switch t {
	case TrustControl, TrustUser, TrustModel, TrustExternal, TrustInterSession:
		return true
	}
	return false
}

// AppendMessages appends messages (each naming its session, which must
// exist) in one transaction, assigning each the next per-session seq. The
// assigned seqs are written back into msgs.
func (s *Store) AppendMessages(ctx context.Context, msgs []Message) error {
	for i := range msgs {
		if !validRole(msgs[i].Role) {
			return fmt.Errorf("store: message %d: role %q is not system|user|assistant|tool", i, msgs[i].Role)
		}
		if !validTrust(msgs[i].Trust) {
			return fmt.Errorf("store: message %d: trust %q is not a trust class", i, msgs[i].Trust)
		}
	}
	now := s.nowMS()
	return s.Tx(ctx, func(tx *sql.Tx) error { return s.appendMessagesTx(ctx, tx, msgs, now) })
}

// appendMessagesTx appends msgs inside tx, reserving each session's seqs
// with one UPDATE per session.
func (s *Store) appendMessagesTx(ctx context.Context, tx *sql.Tx, msgs []Message, now int64) error {
	bodies, err := s.encodeMessages(msgs)
	if err != nil {
		return err
	}
	return s.appendEncodedTx(ctx, tx, msgs, bodies, now)
}

// appendMessagesSetTx is appendMessagesTx that also applies set (may be
// nil), as appendSetTx does.
func (s *Store) appendMessagesSetTx(ctx context.Context, tx *sql.Tx, msgs []Message, now int64, set *sessionSet) error {
	bodies, err := s.encodeMessages(msgs)
	if err != nil {
		return err
	}
	return s.appendSetTx(ctx, tx, msgs, bodies, now, set, "")
}

// encodeMessages returns each message's stored content (its JSON),
// checked against the size limits.
func (s *Store) encodeMessages(msgs []Message) ([]string, error) {
	bodies := make([]string, len(msgs))
	for i := range msgs {
		b, err := json.Marshal(msgs[i].Content)
		if err != nil {
			return nil, err
		}
		if err := s.checkMessageSize(i, &msgs[i], len(b)); err != nil {
			return nil, err
		}
		bodies[i] = string(b)
	}
	return bodies, nil
}

// appendEncodedTx is appendMessagesTx with the contents already encoded
// (bodies[i] is msgs[i]'s, from encodeMessages).
func (s *Store) appendEncodedTx(ctx context.Context, tx *sql.Tx, msgs []Message, bodies []string, now int64) error {
	return s.appendSetFromTx(ctx, tx, msgs, bodies, now, nil, "", nil)
}

// appendFromTx is appendEncodedTx where each session in first (key → the
// seq its first message in msgs takes) was written by the caller in tx
// with its counters already counting these messages (a session created
// with its first messages, CreateRun): its seqs are not reserved again.
func (s *Store) appendFromTx(ctx context.Context, tx *sql.Tx, msgs []Message, bodies []string, now int64, first map[string]int64) error {
	return s.appendSetFromTx(ctx, tx, msgs, bodies, now, nil, "", first)
}

// sessionSet is a change of one session row made together with an append
// (appendSetTx): a run's end or start sets its session's status in the
// UPDATE that reserves the session's seqs instead of a second UPDATE of the
// same row (and the same updated_at index entry).
type sessionSet struct {
	key         string
	status      string // "" = unchanged
	archive     bool   // archived_at = now unless already archived
	modelServed string // "" = unchanged
}

// clause is the SET items (with their arguments) the change adds.
func (c *sessionSet) clause(now int64) (string, []any) {
	var b strings.Builder
	var args []any
	if c.status != "" {
		b.WriteString(", status = ?")
		args = append(args, c.status)
	}
	if c.archive {
		b.WriteString(", archived_at = COALESCE(archived_at, ?)")
		args = append(args, now)
	}
	if c.modelServed != "" {
		b.WriteString(", model_served = ?")
		args = append(args, c.modelServed)
	}
	return b.String(), args
}

// setSessionTx applies set alone (no message of its session was
// appended): a status change also moves updated_at, as an append does.
func (s *Store) setSessionTx(ctx context.Context, tx *sql.Tx, set *sessionSet, now int64) error {
	if set == nil {
		return nil
	}
	clause, args := set.clause(now)
	q := "UPDATE sessions SET " + clause[2:]
	if set.status != "" {
		q += ", updated_at = ?"
		args = append(args, now)
	}
	_, err := s.exec(ctx, tx, q+" WHERE key = ?", append(args, set.key)...)
	return err
}

// appendSetTx is appendEncodedTx that also applies set (may be nil) to its
// session, in the append's UPDATE when a message goes to that session.
// The messages of session optional ("" = none) are left out when that
// session does not exist; any other missing session is an error.
func (s *Store) appendSetTx(ctx context.Context, tx *sql.Tx, msgs []Message, bodies []string, now int64, set *sessionSet, optional string) error {
	return s.appendSetFromTx(ctx, tx, msgs, bodies, now, set, optional, nil)
}

// appendSetFromTx is appendSetTx and appendFromTx in one: set (may be nil)
// applied with the append, optional's messages left out when it is
// missing, and the sessions in first taken as already counted.
func (s *Store) appendSetFromTx(ctx context.Context, tx *sql.Tx, msgs []Message, bodies []string, now int64, set *sessionSet, optional string, first map[string]int64) error {
	// Reserve each session's seqs with one UPDATE per session per batch.
	type span struct {
		count         int64
		tokIn, tokOut int64
		cost          float64
	}
	spans := map[string]*span{}
	var order []string
	for i := range msgs {
		sp := spans[msgs[i].SessionKey]
		if sp == nil {
			sp = &span{}
			spans[msgs[i].SessionKey] = sp
			order = append(order, msgs[i].SessionKey)
		}
		sp.count++
		sp.tokIn += msgs[i].TokensIn
		sp.tokOut += msgs[i].TokensOut
		sp.cost += msgs[i].CostUSD
	}
	next := make(map[string]int64, len(order))
	skip := "" // the optional session, found missing
	for _, key := range order {
		if seq, ok := first[key]; ok {
			next[key] = seq
			continue
		}
		sp := spans[key]
		q := `UPDATE sessions SET message_count = message_count + ?,
			tokens_in = tokens_in + ?, tokens_out = tokens_out + ?, cost_usd = cost_usd + ?, updated_at = ?`
		args := []any{sp.count, sp.tokIn, sp.tokOut, sp.cost, now}
		if set != nil && set.key == key {
			clause, extra := set.clause(now)
			q += clause
			args = append(args, extra...)
			set = nil // applied
		}
		first, err := s.reserveSeqs(ctx, tx, q+` WHERE key = ?`, append(args, key), key, sp.count)
		if errors.Is(err, sql.ErrNoRows) && key == optional {
			skip = key
			continue
		}
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("store: append to session %q: %w", key, ErrNotFound)
		}
		if err != nil {
			return err
		}
		next[key] = first
	}
	if err := s.setSessionTx(ctx, tx, set, now); err != nil { // no message went to its session
		return err
	}
	for i := range msgs {
		if msgs[i].Role == RoleAssistant && msgs[i].Content.Text != "" {
			// A reply: someone may be waiting for it (subagents send).
			if err := s.Notify(ctx, tx, TopicMessages); err != nil {
				return err
			}
			break
		}
	}
	// The rows go in multi-row INSERTs of up to insertChunk rows: a
	// statement execution per chunk instead of per message (a run of
	// coalesced records is dozens of rows).
	bound := map[int]*sql.Stmt{}      // chunk size → its statement, bound to tx
	rows := make([]int, 0, len(msgs)) // the messages inserted, by index
	for i := range msgs {
		if skip == "" || msgs[i].SessionKey != skip {
			rows = append(rows, i)
		}
	}
	var args []any
	for i := 0; i < len(rows); {
		n := min(len(rows)-i, insertChunk)
		args = args[:0]
		for _, j := range rows[i : i+n] {
			m := &msgs[j]
			if m.CreatedAt == 0 {
				m.CreatedAt = now
			}
			seq := next[m.SessionKey]
			next[m.SessionKey] = seq + 1
			m.Seq = seq
			text := m.Content.IndexText()
			if m.noIndex {
				text = ""
			}
			args = append(args, m.SessionKey, seq, m.Role, bodies[j], text, m.Trust, m.TokensIn, m.TokensOut, m.CreatedAt)
			if s.d == postgresDialect {
				args = append(args, lexemes(text))
			}
		}
		q := s.d.insertMessages(n)
		ins := bound[n]
		if ins == nil {
			cached, err := s.txStmt(ctx, q) // nil the first time while tx holds the only connection
			if err != nil {
				return err
			}
			if cached != nil {
				ins = tx.StmtContext(ctx, cached) // bound once for the whole batch
				bound[n] = ins
			}
		}
		var res sql.Result
		var err error
		s.wstats.stmts.Add(1)
		if ins != nil {
			res, err = ins.ExecContext(ctx, args...)
		} else {
			res, err = tx.ExecContext(ctx, s.d.rebind(q), args...) // not cached (yet): run on tx
		}
		if err != nil {
			return err
		}
		if err := s.markIndexFrom(res, n); err != nil {
			return err
		}
		i += n
	}
	return nil
}

// reserveSeqs runs update (an UPDATE of session key's row, ending in
// "WHERE key = ?", that adds n to message_count) and returns the first of
// the n seqs it reserved; sql.ErrNoRows when the session does not exist.
//
// On PostgreSQL the UPDATE comes first and says the new count itself
// (RETURNING): its row lock is what serializes writers on other hosts, so
// no read may come before it. On SQLite the write transaction already
// holds the database's one write lock (BEGIN IMMEDIATE), so nothing can
// change the row between a read and the UPDATE, and a point read of
// message_count plus a plain UPDATE is cheaper than UPDATE … RETURNING,
// which builds an ephemeral table on every execution.
func (s *Store) reserveSeqs(ctx context.Context, tx *sql.Tx, update string, args []any, key string, n int64) (int64, error) {
	var last int64
	if s.d.returningSeq {
		if err := s.queryRow(ctx, tx, update+` RETURNING message_count`, args...).Scan(&last); err != nil {
			return 0, err
		}
		return last - n + 1, nil
	}
	if err := s.queryRow(ctx, tx, `SELECT message_count FROM sessions WHERE key = ?`, key).Scan(&last); err != nil {
		return 0, err
	}
	if _, err := s.exec(ctx, tx, update, args...); err != nil {
		return 0, err
	}
	return last + 1, nil
}

// insertChunk is the most rows one INSERT of appendEncodedTx carries.
const insertChunk = 16

// AppendMessage appends one message and returns its seq.
func (s *Store) AppendMessage(ctx context.Context, m Message) (int64, error) {
	msgs := []Message{m}
	if err := s.AppendMessages(ctx, msgs); err != nil {
		return 0, err
	}
	return msgs[0].Seq, nil
}

// HistoryQuery selects a page of a transcript.
type HistoryQuery struct {
	Key          string
	Limit        int  // messages to return
	Offset       int  // newest messages skipped
	IncludeTools bool // include tool messages and tool-call-only assistant messages
}

// History returns up to q.Limit messages, oldest first, ending q.Offset
// messages before the newest; total counts the messages the query could
// see (tool messages excluded unless IncludeTools).
func (s *Store) History(ctx context.Context, q HistoryQuery) (msgs []Message, total int, err error) {
	s.Flush(ctx, q.Key) // read the session's own tool-call records too
	filter := ""
	if !q.IncludeTools {
		filter = " AND role != 'tool' AND NOT (role = 'assistant' AND body = '')"
	}
	if err := s.readRow(ctx, "SELECT count(*) FROM messages WHERE session_key = ?"+filter, q.Key).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("store: history of %q: %w", q.Key, s.fault(err))
	}
	limit := int64(q.Limit)
	if limit < 0 {
		limit = math.MaxInt64 // no limit (PostgreSQL refuses a negative LIMIT)
	}
	rows, err := s.readRows(ctx, `SELECT seq, role, content, trust, tokens_in, tokens_out, created_at FROM messages
		WHERE session_key = ?`+filter+` ORDER BY seq DESC LIMIT ? OFFSET ?`, q.Key, limit, q.Offset)
	if err != nil {
		return nil, 0, fmt.Errorf("store: history of %q: %w", q.Key, s.fault(err))
	}
	defer rows.Close()
	for rows.Next() {
		m := Message{SessionKey: q.Key}
		var content string
		if err := rows.Scan(&m.Seq, &m.Role, &content, &m.Trust, &m.TokensIn, &m.TokensOut, &m.CreatedAt); err != nil {
			return nil, 0, err
		}
		if err := json.Unmarshal([]byte(content), &m.Content); err != nil {
			m.Content = Content{Text: content}
		}
		msgs = append(msgs, m)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, s.fault(err)
	}
	for i, j := 0, len(msgs)-1; i < j; i, j = i+1, j-1 {
		msgs[i], msgs[j] = msgs[j], msgs[i]
	}
	return msgs, total, nil
}

// Transcript returns every message of a session in seq order.
func (s *Store) Transcript(ctx context.Context, key string) ([]Message, error) {
	msgs, _, err := s.History(ctx, HistoryQuery{Key: key, Limit: -1, IncludeTools: true})
	return msgs, err
}

// DeliveredAfter reports, for a session's messages with seq > after, the
// newest seq committed and the text of each message another session
// delivered to it (role user or system, trust inter_session), in order.
// Unlike MessagesAfter it does not wait for the session's pending
// read-only records (they are the session's own calls, never deliveries)
// and decodes only the delivered messages' contents: the notifier calls it
// at every wake-up.
func (s *Store) DeliveredAfter(ctx context.Context, key string, after int64) (last int64, texts []string, err error) {
	rows, err := s.readRows(ctx, `SELECT seq, CASE WHEN trust = 'inter_session' AND role NOT IN ('assistant', 'tool') THEN content ELSE '' END
		FROM messages WHERE session_key = ? AND seq > ? ORDER BY seq`, key, after)
	if err != nil {
		return after, nil, err
	}
	defer rows.Close()
	last = after
	for rows.Next() {
		var seq int64
		var content string
		if err := rows.Scan(&seq, &content); err != nil {
			return after, nil, err
		}
		last = max(last, seq)
		if content == "" {
			continue
		}
		var c Content
		if err := json.Unmarshal([]byte(content), &c); err != nil {
			c = Content{Text: content}
		}
		texts = append(texts, c.Text)
	}
	if err := rows.Err(); err != nil {
		return after, nil, err
	}
	return last, texts, nil
}

// MessagesAfter returns a session's messages with seq > after, in order.
func (s *Store) MessagesAfter(ctx context.Context, key string, after int64) ([]Message, error) {
	s.Flush(ctx, key)
	rows, err := s.readRows(ctx, `SELECT seq, role, content, trust, tokens_in, tokens_out, created_at FROM messages
		WHERE session_key = ? AND seq > ? ORDER BY seq`, key, after)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Message
	for rows.Next() {
		m := Message{SessionKey: key}
		var content string
		if err := rows.Scan(&m.Seq, &m.Role, &content, &m.Trust, &m.TokensIn, &m.TokensOut, &m.CreatedAt); err != nil {
			return nil, err
		}
		if err := json.Unmarshal([]byte(content), &m.Content); err != nil {
			m.Content = Content{Text: content}
		}
		out = append(out, m)
	}
	return out, rows.Err()
}
