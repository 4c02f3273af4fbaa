package store

import (
	"context"
	"database/sql"
	"sync"
	"sync/atomic"
)

// announceSignal answers "may requester have undelivered announces?" from
// memory, so a tool call with nothing to deliver (nearly all of them) does
// not query for it. gen moves whenever an announce may have appeared: this
// process committed one (FinishRun), or the heartbeat's poll saw the
// announces table grow (another process wrote one). A requester is known
// clear at the gen read before the query (or claim) that left it nothing
// pending; any later announce moves gen past it.
type announceSignal struct {
	gen     atomic.Uint64
	mu      sync.Mutex
	clear   map[string]uint64 // requester → gen at which nothing was pending
	lastMax int64             // newest announce id the poll saw
}

func (a *announceSignal) isClear(requester string, gen uint64) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	g, ok := a.clear[requester]
	return ok && g == gen
}

func (a *announceSignal) markClear(requester string, gen uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.clear == nil {
		a.clear = map[string]uint64{}
	}
	a.clear[requester] = gen
}

// announced is called after an announce was committed.
func (a *announceSignal) announced() { a.gen.Add(1) }

// PollAnnounces notices announces written by other processes on this
// database (the run manager calls it with its heartbeat): afterwards the
// next tool call of any requester looks for undelivered announces again.
// On SQLite it watches the newest announce id (ids grow in commit order
// there). On PostgreSQL ids are handed out at insert, so it watches the
// change counter instead (dashboard.go: advanced after every commit of
// every Store): any commit since the last poll makes each requester look
// once more, an indexed count of its pending announces.
func (s *Store) PollAnnounces(ctx context.Context) error {
	q := `SELECT COALESCE(max(id), 0) FROM announces`
	if s.d == postgresDialect {
		q = `SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM changes`
	}
	var max int64
	if err := s.readRow(ctx, q).Scan(&max); err != nil {
		return err
	}
	s.ann.mu.Lock()
	changed := max != s.ann.lastMax
	s.ann.lastMax = max
	s.ann.mu.Unlock()
	if changed {
		s.ann.announced()
	}
	return nil
}

// RecordCall records a tool call (msgs: the call and its result, may be
// none) in requester's transcript and claims requester's undelivered
// announces, which it returns to go in front of the result.
//
// The durability rule: when durable is set (a call that may have changed
// something) or there are announces to claim, RecordCall returns once the
// record and the claim are committed, in one transaction. Otherwise the
// record is handed to the writer and RecordCall returns at once: it
// commits in order with every later write (the writer is FIFO) within
// recordLinger (sooner when a waited write or a Flush comes), and Close
// flushes it; a kill -9 in between loses
// that one record and nothing else.
func (s *Store) RecordCall(ctx context.Context, msgs []Message, requester string, durable bool) ([]Announce, error) {
	gen := s.ann.gen.Load()
	var pending int
	if !s.ann.isClear(requester, gen) {
		if err := s.readRow(ctx, `SELECT count(*) FROM announces WHERE requester_key = ? AND delivered_at IS NULL AND silent = 0`, requester).Scan(&pending); err != nil {
			return nil, err
		}
		if pending == 0 {
			s.ann.markClear(requester, gen)
		}
	}
	if pending == 0 && len(msgs) == 0 {
		return nil, nil
	}
	if err := validMessages(msgs); err != nil {
		return nil, err
	}
	if pending == 0 && !durable {
		return nil, s.appendAsync(msgs)
	}
	out, err := s.recordAndClaimTx(ctx, msgs, requester, pending > 0)
	if err == nil {
		s.ann.markClear(requester, gen) // the claim took everything committed before gen
	}
	return out, err
}

// appendAsync hands msgs to the writer without waiting for the commit.
// The contents are encoded (and checked against the limits) here, so a
// record the store would refuse is refused to the caller, and the writer
// may append the records of one session's calls made in sequence together
// (coalesce).
func (s *Store) appendAsync(msgs []Message) error {
	req, err := s.recordReq(msgs)
	if err != nil {
		return err
	}
	select {
	case s.writes <- req:
		return nil
	case <-s.stop:
		req.answer(ErrClosed)
		return ErrClosed
	}
}

// recordReq is the write of appendAsync, registered for Flush.
func (s *Store) recordReq(msgs []Message) (*txReq, error) {
	now := s.nowMS()
	bodies, err := s.encodeMessages(msgs)
	if err != nil {
		return nil, err
	}
	bg := context.Background()
	req := &txReq{ctx: bg, done: make(chan error, 1), committed: make(chan struct{})}
	req.rec = &asyncRecord{key: msgs[0].SessionKey, msgs: msgs, bodies: bodies, now: now}
	for _, m := range msgs[1:] {
		if m.SessionKey != req.rec.key {
			req.rec.key = "" // spans sessions: never coalesced
			break
		}
	}
	req.fn = func(tx *sql.Tx) error { return s.appendEncodedTx(bg, tx, msgs, bodies, now) }
	s.wstats.async.Add(1)
	req.after = func(err error) {
		if err != nil {
			s.log.Error("store: a tool call's transcript record was not written", "session", msgs[0].SessionKey, "err", err)
		}
		s.recMu.Lock()
		for _, m := range msgs {
			if s.recLast[m.SessionKey] == req {
				delete(s.recLast, m.SessionKey)
			}
		}
		s.recMu.Unlock()
	}
	s.recMu.Lock()
	if s.recLast == nil {
		s.recLast = map[string]*txReq{}
	}
	for _, m := range msgs {
		s.recLast[m.SessionKey] = req
	}
	s.recMu.Unlock()
	return req, nil
}

// asyncRecord is what an appendAsync write appends: messages of one
// session (key; "" when they span several), encoded, stamped now.
type asyncRecord struct {
	key    string
	msgs   []Message
	bodies []string
	now    int64
}

// coalesce returns batch with every run of consecutive records nobody
// waits for (appendAsync) of one session replaced by a single write that
// appends them all: one seq reservation (UPDATE of the session row) and
// one bound INSERT statement for the run instead of one per record. The
// order of the batch is kept, so every write after a record still sees
// it. The records of a run share their outcome: they name the same
// session and were checked when handed over, so what fails one (the
// session was deleted, the database failed) fails each of them alone too.
func (s *Store) coalesce(batch []*txReq) []*txReq {
	var out []*txReq
	for i := 0; i < len(batch); {
		j := i + 1
		if r := batch[i].rec; r != nil && r.key != "" {
			for j < len(batch) && batch[j].rec != nil && batch[j].rec.key == r.key {
				j++
			}
		}
		if j-i < 2 {
			if out != nil {
				out = append(out, batch[i])
			}
			i = j
			continue
		}
		if out == nil {
			out = append(make([]*txReq, 0, len(batch)), batch[:i]...)
		}
		out = append(out, s.mergeRecords(batch[i:j]))
		i = j
	}
	if out == nil {
		return batch
	}
	return out
}

// mergeRecords is one write appending the records of parts (appendAsync
// writes of one session, in order) and answering each of them.
func (s *Store) mergeRecords(parts []*txReq) *txReq {
	parts = append([]*txReq(nil), parts...) // the batch slice is reused
	n := 0
	for _, p := range parts {
		n += len(p.rec.msgs)
	}
	msgs := make([]Message, 0, n)
	bodies := make([]string, 0, n)
	var now int64
	for _, p := range parts {
		for _, m := range p.rec.msgs {
			if m.CreatedAt == 0 {
				m.CreatedAt = p.rec.now
			}
			msgs = append(msgs, m)
		}
		bodies = append(bodies, p.rec.bodies...)
		now = max(now, p.rec.now)
	}
	bg := context.Background()
	return &txReq{
		ctx:       bg,
		done:      make(chan error, 1),
		committed: make(chan struct{}),
		fn:        func(tx *sql.Tx) error { return s.appendEncodedTx(bg, tx, msgs, bodies, now) },
		after: func(err error) {
			for _, p := range parts {
				p.answer(err)
			}
		},
	}
}

// Flush waits until the records handed to the writer for session key
// without waiting (RecordCall) are committed, so a read of its transcript
// sees them. It returns at once when there are none.
func (s *Store) Flush(ctx context.Context, key string) {
	s.recMu.Lock()
	r := s.recLast[key]
	s.recMu.Unlock()
	if r == nil {
		return
	}
	select {
	case s.nudge <- struct{}{}: // the writer may be lingering with r: commit now
	default: // a nudge is pending already
	}
	select {
	case <-r.committed:
	case <-ctx.Done():
	case <-s.exited:
	}
}
