// Package page implements the opaque cursors of list endpoints ({"items", "next_cursor"},
// DESIGN.md REST conventions): a cursor encodes the sort key of the last item returned.
package page

import (
	"encoding/base64"
	"strconv"
	"strings"
	"time"

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

// TimeID is a cursor on (created_at DESC, id DESC).
type TimeID struct {
	At time.Time
	ID string
}

// EncodeTimeID returns the cursor after (at, id).
func EncodeTimeID(at time.Time, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(at.UTC().Format(time.RFC3339Nano) + "|" + id))
}

// DecodeTimeID parses a cursor from EncodeTimeID; "" gives nil.
func DecodeTimeID(s string) (*TimeID, error) {
	if s == "" {
		return nil, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, ErrBadCursor
	}
	ts, id, ok := strings.Cut(string(b), "|")
	if !ok || id == "" {
		return nil, ErrBadCursor
	}
	at, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		return nil, ErrBadCursor
	}
	return &TimeID{At: at, ID: id}, nil
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
