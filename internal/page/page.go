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
	"github.com/botfleet/botfleet/internal/validate"
)

// Limits of a page: DefaultLimit items unless limit is given, at most MaxLimit.
const (
	DefaultLimit = 50
	MaxLimit     = 200
)

// ErrBadCursor is a 422 (code invalid_cursor, details {"field": "cursor"}) for a cursor this
// server did not issue: not base64url, not in the form it writes, a time PostgreSQL cannot
// store, or longer than MaxCursorLen. A cursor is a different kind of mistake from a field
// that breaks a rule (the client must not build cursors), hence its own code.
var ErrBadCursor = apperr.Invalid("invalid_cursor", "cursor is not valid: pass a next_cursor exactly as a list returned it").
	WithDetails(map[string]any{"field": "cursor"})

// ErrBadLimit is a 422 invalid_field for a limit outside 1..MaxLimit (details {"field": "limit"}).
var ErrBadLimit = validate.Field("limit", "limit must be an integer between 1 and %d", MaxLimit)

// MaxCursorLen is the longest cursor accepted, in bytes; the cursors this package writes
// are under 100.
const MaxCursorLen = 128

// Cursor times must lie in years 1..9999: Go parses year 0000, which PostgreSQL rejects
// (there is no year 0 in its calendar), and RFC 3339 has four-digit years.
var (
	minCursorTime = time.Date(1, time.January, 1, 0, 0, 0, 0, time.UTC)
	maxCursorTime = time.Date(9999, time.December, 31, 23, 59, 59, 999999999, time.UTC)
)

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
	a, err := DecodeAfter(cursor)
	if err != nil {
		return nil, 0, err
	}
	return &a, n, nil
}

// DecodeAfter decodes a non-empty cursor written by Trim. It accepts exactly what
// encodeAfter writes: base64url without padding of "<UTC time, RFC 3339>|<canonical UUID>",
// with the time in years 1..9999 (PostgreSQL stores it), and so refuses anything else with
// ErrBadCursor: other encodings, offsets other than Z, padding, trailing bits, extra fields.
func DecodeAfter(cursor string) (After, error) {
	if cursor == "" || len(cursor) > MaxCursorLen {
		return After{}, ErrBadCursor
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(cursor)
	if err != nil {
		return After{}, ErrBadCursor
	}
	ts, rawID, ok := strings.Cut(string(b), "|")
	if !ok {
		return After{}, ErrBadCursor
	}
	at, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil || at.Before(minCursorTime) || at.After(maxCursorTime) {
		return After{}, ErrBadCursor
	}
	id, ok := validate.ParseUUID(rawID)
	if !ok {
		return After{}, ErrBadCursor
	}
	if encodeAfter(at, id) != cursor { // not in the one form this package writes
		return After{}, ErrBadCursor
	}
	return After{At: at.UTC(), ID: id}, nil
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

// DecodeInt parses a cursor from EncodeInt; "" gives 0, false. Only what EncodeInt writes
// for a positive n is accepted (ids start at 1); anything else is ErrBadCursor.
func DecodeInt(s string) (int64, bool, error) {
	if s == "" {
		return 0, false, nil
	}
	if len(s) > MaxCursorLen {
		return 0, false, ErrBadCursor
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil || len(b) < 2 || b[0] != 'i' {
		return 0, false, ErrBadCursor
	}
	n, err := strconv.ParseInt(string(b[1:]), 10, 64)
	if err != nil || n <= 0 || EncodeInt(n) != s {
		return 0, false, ErrBadCursor
	}
	return n, true, nil
}

// EncodeUUID returns a cursor for a UUID key (pages ordered by a unique UUID column).
func EncodeUUID(id uuid.UUID) string {
	return base64.RawURLEncoding.EncodeToString([]byte("u" + id.String()))
}

// DecodeUUID parses a cursor from EncodeUUID; "" gives nil. Only what EncodeUUID writes is
// accepted; anything else is ErrBadCursor.
func DecodeUUID(s string) (*uuid.UUID, error) {
	if s == "" {
		return nil, nil
	}
	if len(s) > MaxCursorLen {
		return nil, ErrBadCursor
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil || len(b) < 2 || b[0] != 'u' {
		return nil, ErrBadCursor
	}
	id, ok := validate.ParseUUID(string(b[1:]))
	if !ok || EncodeUUID(id) != s {
		return nil, ErrBadCursor
	}
	return &id, nil
}
