// Package page implements the opaque cursors of list endpoints ({"items", "next_cursor"},
// DESIGN.md REST conventions): a cursor encodes the sort key of the last item returned.
package page

import (
	"encoding/base64"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/botfleet/botfleet/internal/apperr"
)

// Limits of a page: DefaultLimit items unless limit is given, at most MaxLimit.
const (
	DefaultLimit = 50
	MaxLimit     = 200
)

// ErrBadCursor is a 422 for a cursor this server did not issue.
var ErrBadCursor = apperr.Invalid("invalid_cursor", "cursor is not valid")

// ErrBadLimit is a 422 for a limit outside 1..MaxLimit.
var ErrBadLimit = apperr.Invalid("invalid_limit", "limit must be between 1 and 200")

// Limit normalises a requested limit: 0 means DefaultLimit; outside 1..MaxLimit is ErrBadLimit.
func Limit(n int) (int, error) {
	switch {
	case n == 0:
		return DefaultLimit, nil
	case n < 0 || n > MaxLimit:
		return 0, ErrBadLimit
	}
	return n, nil
}

// After is the position after which a page ordered by (created_at DESC, id DESC) starts.
type After struct {
	At time.Time
	ID uuid.UUID
}

// encodeAfter returns the cursor after (at, id).
func encodeAfter(at time.Time, id uuid.UUID) string {
	return base64.RawURLEncoding.EncodeToString([]byte(at.UTC().Format(time.RFC3339Nano) + "|" + id.String()))
}

// Parse normalises limit (see Limit) and decodes cursor, a next_cursor this package issued;
// "" gives a nil *After (the first page). Errors: ErrBadLimit, ErrBadCursor.
func Parse(cursor string, limit int) (*After, int, error) {
	n, err := Limit(limit)
	if err != nil {
		return nil, 0, err
	}
	if cursor == "" {
		return nil, n, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil {
		return nil, 0, ErrBadCursor
	}
	ts, rawID, ok := strings.Cut(string(b), "|")
	if !ok {
		return nil, 0, ErrBadCursor
	}
	at, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		return nil, 0, ErrBadCursor
	}
	id, err := uuid.Parse(rawID)
	if err != nil {
		return nil, 0, ErrBadCursor
	}
	return &After{At: at, ID: id}, n, nil
}

// Newest orders q by (alias.created_at DESC, alias.id DESC), starts after a (nil: from the
// newest) and fetches limit+1 rows, so that Trim can tell whether a next page exists.
func Newest(q *bun.SelectQuery, alias string, a *After, limit int) *bun.SelectQuery {
	if a != nil {
		q = q.Where("(?.created_at, ?.id) < (?, ?)", bun.Ident(alias), bun.Ident(alias), a.At, a.ID)
	}
	return q.OrderExpr("?.created_at DESC, ?.id DESC", bun.Ident(alias), bun.Ident(alias)).Limit(int64(limit + 1))
}

// Trim cuts rows fetched by Newest to limit and returns the next_cursor: the position of the
// last row kept, or "" when there is no further page. key gives a row's (created_at, id).
func Trim[T any](rows []T, limit int, key func(T) (time.Time, uuid.UUID)) ([]T, string) {
	if len(rows) <= limit {
		return rows, ""
	}
	rows = rows[:limit]
	return rows, encodeAfter(key(rows[limit-1]))
}

// EncodeInt returns a cursor for an integer key.
func EncodeInt(n int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte("i" + strconv.FormatInt(n, 10)))
}

// DecodeInt parses a cursor from EncodeInt; "" gives 0, false.
func DecodeInt(s string) (int64, bool, error) {
	if s == "" {
		return 0, false, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) < 2 || b[0] != 'i' {
		return 0, false, ErrBadCursor
	}
	n, err := strconv.ParseInt(string(b[1:]), 10, 64)
	if err != nil {
		return 0, false, ErrBadCursor
	}
	return n, true, nil
}
