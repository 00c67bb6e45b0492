// Package apperr is botfleet's error vocabulary: every domain error carries a Kind (which the
// HTTP layer maps to a status) and a stable snake_case Code (which clients match on).
package apperr

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/redis/go-redis/v9"
)

// Kind classifies an error for transport mapping.
type Kind int

// Kinds. The api package maps them to HTTP statuses (see DESIGN.md, REST conventions).
const (
	KindInternal     Kind = iota // 500
	KindInvalid                  // 422 invalid field (400 for malformed input, see KindMalformed)
	KindMalformed                // 400
	KindUnauthorized             // 401
	KindNotFound                 // 404, also another tenant's resource
	KindConflict                 // 409
	KindTooLarge                 // 413
	KindRateLimited              // 429
	KindUpstream                 // 502: Telegram answered with an error or could not be reached
	KindUnavailable              // 503: PostgreSQL or Redis is down
	KindForbidden                // 403: authenticated, but these credentials may not do this
)

// Error is a domain error: Kind for the status, Code for clients, Message for humans.
// Details is optional structured data returned to the client (e.g. the invalid ids).
type Error struct {
	Kind    Kind
	Code    string
	Message string
	Details any
	Err     error
}

// Error implements error.
func (e *Error) Error() string {
	if e.Err != nil {
		return e.Code + ": " + e.Message + ": " + e.Err.Error()
	}
	return e.Code + ": " + e.Message
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Is matches another *Error with the same Kind and Code, so sentinels work with errors.Is
// even after WithDetails or Wrap.
func (e *Error) Is(target error) bool {
	var t *Error
	if !errors.As(target, &t) {
		return false
	}
	return t.Kind == e.Kind && t.Code == e.Code
}

// New returns an Error.
func New(kind Kind, code, message string) *Error {
	return &Error{Kind: kind, Code: code, Message: message}
}

// Wrap returns a copy of e with cause err.
func (e *Error) Wrap(err error) *Error {
	c := *e
	c.Err = err
	return &c
}

// WithDetails returns a copy of e with details attached.
func (e *Error) WithDetails(d any) *Error {
	c := *e
	c.Details = d
	return &c
}

// WithMessage returns a copy of e with another message.
func (e *Error) WithMessage(format string, args ...any) *Error {
	c := *e
	c.Message = fmt.Sprintf(format, args...)
	return &c
}

// Invalid is a 422 for field.
func Invalid(code, message string) *Error { return New(KindInvalid, code, message) }

// NotFound is a 404.
func NotFound(code, message string) *Error { return New(KindNotFound, code, message) }

// Conflict is a 409.
func Conflict(code, message string) *Error { return New(KindConflict, code, message) }

// Common errors shared by several packages.
var (
	ErrUnavailable  = New(KindUnavailable, "dependency_unavailable", "a dependency (PostgreSQL or Redis) is unavailable; retry later")
	ErrUnauthorized = New(KindUnauthorized, "unauthorized", "missing or invalid credentials")
	ErrMalformed    = New(KindMalformed, "malformed_request", "the request body is not valid JSON")
)

// KindOf returns the Kind of err: the Kind of the first *Error in its chain, KindUnavailable
// for connectivity failures (see IsConnectivity), KindInternal otherwise.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	if IsConnectivity(err) {
		return KindUnavailable
	}
	return KindInternal
}

// IsConnectivity reports whether err means PostgreSQL or Redis could not be reached or
// stopped answering (refused, reset, timeout, pool exhaustion, bad connection, shutdown).
// Such errors become 503 so that the caller (Telegram, a client) retries.
func IsConnectivity(err error) bool {
	if err == nil {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		// Class 08 connection exception, 57P01-57P03 admin shutdown / cannot connect now, 53300 too many connections.
		c := pgErr.Code
		return len(c) >= 2 && c[:2] == "08" || c == "57P01" || c == "57P02" || c == "57P03" || c == "53300"
	}
	var connErr *pgconn.ConnectError
	var netErr net.Error
	var opErr *net.OpError
	switch {
	case errors.As(err, &connErr), errors.As(err, &opErr), errors.As(err, &netErr):
		return true
	case errors.Is(err, driver.ErrBadConn), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, redis.ErrClosed), errors.Is(err, redis.ErrPoolTimeout),
		errors.Is(err, redis.ErrPoolExhausted):
		return true
	}
	var pe interface{ SafeToRetry() bool }
	if errors.As(err, &pe) && pe.SafeToRetry() {
		return true
	}
	return pgconn.Timeout(err)
}

// Classify wraps infrastructure errors: a connectivity failure becomes ErrUnavailable (503),
// an *Error is returned unchanged, anything else is returned as is (500).
func Classify(err error) error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	if IsConnectivity(err) {
		return ErrUnavailable.Wrap(err)
	}
	return err
}
