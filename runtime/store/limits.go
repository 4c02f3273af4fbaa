package store

import (
	"errors"
	"fmt"
	"sync/atomic"
)

// Limits bound the cost of one input: the size of a message the store
// keeps and how much of each stored message a search reads.
type Limits struct {
	// MaxMessageBytes bounds one message's text (default 1 MiB); its whole
	// encoded content (text, tool calls, tool results) may be four times that.
	MaxMessageBytes int
	// SearchScoreBytes is the largest message text search reads to rank
	// it (default 16 KiB); a longer message is not read: it is scored as
	// holding each query word once, with its length estimated from its size.
	SearchScoreBytes int
	// SearchQueryBytes and SearchQueryTerms bound a query (defaults 1,024
	// bytes and 32 words); a larger query is refused with ErrQueryTooLarge.
	SearchQueryBytes int
	SearchQueryTerms int
}

func (l Limits) effective() Limits {
	def := func(v, d int) int {
		if v <= 0 {
			return d
		}
		return v
	}
	return Limits{
		MaxMessageBytes:  def(l.MaxMessageBytes, 1<<20),
		SearchScoreBytes: def(l.SearchScoreBytes, 16<<10),
		SearchQueryBytes: def(l.SearchQueryBytes, 1024),
		SearchQueryTerms: def(l.SearchQueryTerms, 32),
	}
}

// ErrTooLarge is wrapped by the error of a write or query over a limit.
var ErrTooLarge = errors.New("over a size limit")

// checkMessageSize refuses a message over the limits before it is stored.
func (s *Store) checkMessageSize(i int, m *Message, encoded int) error {
	l := s.limits
	if n := len(m.Content.Text); n > l.MaxMessageBytes {
		return fmt.Errorf("store: message %d for session %q: text is %d bytes, over the limit of %d bytes ([limits] message_bytes): %w",
			i, m.SessionKey, n, l.MaxMessageBytes, ErrTooLarge)
	}
	if max := 4 * l.MaxMessageBytes; encoded > max {
		return fmt.Errorf("store: message %d for session %q: content is %d bytes encoded, over the limit of %d bytes (4 × [limits] message_bytes): %w",
			i, m.SessionKey, encoded, max, ErrTooLarge)
	}
	return nil
}

// searchWork counts what searches read to rank messages, so tests can
// assert on the work a query does rather than on time.
type searchWork struct {
	rows  atomic.Int64 // messages scored
	bytes atomic.Int64 // bytes of message text tokenized for scoring
}

// SearchWork reports how many messages searches have scored and how many
// bytes of their text were read to do it, since the store was opened.
func (s *Store) SearchWork() (rows, bytes int64) {
	return s.work.rows.Load(), s.work.bytes.Load()
}
