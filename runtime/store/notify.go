package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Wake-ups across hosts (PostgreSQL LISTEN/NOTIFY). A write transaction
// that changes something another process may be waiting for calls Notify
// with a topic; PostgreSQL delivers the notification when (and only if)
// the transaction commits, to every Store listening on the database's
// channel, which closes the channel Wake handed out for that topic. It is
// only a wake-up: a woken waiter reads the tables as before, and every
// waiter keeps its poll as the fallback (a lost connection, SQLite).

// Wake-up topics.
const (
	TopicRuns      = "runs"      // a run ended, or was queued or requeued
	TopicAnnounces = "announces" // an announce was written
	TopicMessages  = "messages"  // a reply (an assistant message with text) was appended
)

// wakeBus hands out, per topic, a channel closed at the topic's next
// notification.
type wakeBus struct {
	mu    sync.Mutex
	chans map[string]chan struct{}
	count atomic.Int64  // notifications received (tests count wake-ups)
	pid   atomic.Uint32 // the listener connection's server process
}

func (w *wakeBus) wait(topic string) <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.chans == nil {
		w.chans = map[string]chan struct{}{}
	}
	ch := w.chans[topic]
	if ch == nil {
		ch = make(chan struct{})
		w.chans[topic] = ch
	}
	return ch
}

// wake closes topic's channel ("" = every topic: something may have been
// missed, e.g. while the listener reconnected).
func (w *wakeBus) wake(topic string) {
	w.count.Add(1)
	w.mu.Lock()
	defer w.mu.Unlock()
	for t, ch := range w.chans {
		if topic == "" || t == topic {
			close(ch)
			delete(w.chans, t)
		}
	}
}

// Wake returns a channel closed when another process (or this one)
// commits a change of topic. Take it before reading what you wait for,
// then select on it beside your poll. On SQLite it is nil (never ready):
// waiters there keep their polls.
func (s *Store) Wake(topic string) <-chan struct{} {
	if s.d != postgresDialect {
		return nil
	}
	return s.wakes.wait(topic)
}

// Notify queues a wake-up of topic for every process listening, delivered
// when tx commits. A no-op on SQLite.
func (s *Store) Notify(ctx context.Context, tx *sql.Tx, topic string) error {
	if s.d != postgresDialect {
		return nil
	}
	_, err := s.exec(ctx, tx, `SELECT pg_notify(?, ?)`, s.channel, topic)
	return err
}

// notifyChannel is the channel of the database's schema: test schemas on
// one server (and deployments in different schemas) do not wake each
// other. PostgreSQL truncates names to 63 bytes, so a long one is hashed.
func notifyChannel(schema string) string {
	ch := "sessionplane:" + schema
	if len(ch) > 63 {
		sum := sha256.Sum256([]byte(schema))
		ch = "sessionplane:" + hex.EncodeToString(sum[:16])
	}
	return ch
}

// listenConn opens the listener's own connection (not one of the pool)
// and LISTENs on the channel.
func (s *Store) listenConn(ctx context.Context, cfg *pgx.ConnConfig) (*pgx.Conn, error) {
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{s.channel}.Sanitize()); err != nil {
		closeConn(conn)
		return nil, err
	}
	s.wakes.pid.Store(conn.PgConn().PID())
	return conn, nil
}

func closeConn(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn.Close(ctx)
}

// listen is the one goroutine that receives the notifications, on conn
// (already listening); when the connection is lost it reconnects with
// backoff. Close cancels ctx and waits for it.
func (s *Store) listen(ctx context.Context, cfg *pgx.ConnConfig, conn *pgx.Conn) {
	defer s.listenWG.Done()
	backoff := 100 * time.Millisecond
	for {
		var err error
		for err == nil {
			var n *pgconn.Notification
			if n, err = conn.WaitForNotification(ctx); err == nil {
				s.woke(n.Payload)
				backoff = 100 * time.Millisecond
			}
		}
		closeConn(conn)
		if ctx.Err() != nil {
			return
		}
		s.log.Warn("store: PostgreSQL notifications lost, reconnecting (waiters poll meanwhile)", "db", s.path, "err", err)
		for {
			// Notifications may be missed while not listening: wake every
			// waiter so each reads the tables again.
			s.woke("")
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			backoff = min(2*backoff, 5*time.Second)
			if conn, err = s.listenConn(ctx, cfg); err == nil {
				s.woke("") // what was committed before LISTEN took effect
				break
			}
			if ctx.Err() != nil {
				return
			}
			s.log.Warn("store: reconnect the PostgreSQL listener", "db", s.path, "err", err, "retry_in", backoff)
		}
	}
}

// woke handles a notification of topic ("" = maybe any): it wakes the
// topic's waiters, and for announces also tells the in-memory announce
// signal (record.go). That signal's poll compares the newest announce id,
// which on SQLite grows in commit order; on PostgreSQL ids are handed out
// at insert, so an announce can commit after one with a higher id and the
// poll would not see it move. Notifications come in commit order, one for
// every committed announce, so they close that gap.
func (s *Store) woke(topic string) {
	if topic == "" || topic == TopicAnnounces {
		s.ann.announced()
	}
	s.wakes.wake(topic)
}
