// Package database opens botfleet's PostgreSQL connection (bun over pgx/stdlib) and holds
// small helpers shared by the stores.
package database

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"
)

// DefaultMaxConns is the default size of the connection pool of one process (open and idle
// alike, see Open).
//
// Sizing: PostgreSQL does the most work with about 2-4 active connections per core; this
// machine has 2 cores and runs the API, two workers, PostgreSQL and Redis together, so a
// process gets 16: enough for the webhook's group commit (a few flushes in flight), the
// event processors (one connection each, held for a batch's transaction) and the task
// handlers, whose surplus waits in database/sql's queue (cheap) rather than in PostgreSQL
// (a backend per connection, context switches, lock contention). Three processes use at
// most 48 of PostgreSQL's default max_connections of 100. Raise it with WithMaxConns on
// bigger machines (about 4 per core of the database server, divided among the processes).
const DefaultMaxConns = 16

// Session settings that Open gives every connection unless the DSN sets them.
const (
	// StatementTimeout is the default bound of one statement (statement_timeout; see
	// WithStatementTimeout): a query stuck on a lock or a runaway plan fails instead of
	// holding a connection and its locks for ever.
	StatementTimeout = 30 * time.Second
	// IdleInTransactionTimeout ends a session whose transaction stays idle longer
	// (idle_in_transaction_session_timeout), which releases the row locks of a process that
	// hangs in the middle of a transaction (a claimed batch of events, for example).
	IdleInTransactionTimeout = 60 * time.Second
)

// Option configures Open.
type Option func(*options)

type options struct {
	maxConns         int
	statementTimeout time.Duration
	multiStatements  bool
}

// WithMaxConns sets the pool size (maximum open and idle connections, kept equal).
// n < 1 means DefaultMaxConns.
func WithMaxConns(n int) Option {
	return func(o *options) { o.maxConns = n }
}

// WithStatementTimeout sets the session's statement_timeout (DATABASE_STATEMENT_TIMEOUT);
// d < 1ms means StatementTimeout. A statement_timeout in the DSN still wins.
func WithStatementTimeout(d time.Duration) Option {
	return func(o *options) { o.statementTimeout = d }
}

// WithMultiStatements lets Exec without arguments run several statements separated by ";"
// (PostgreSQL's simple query protocol). Only `botfleet migrate` uses it, for the migration
// files, which are trusted SQL embedded in the binary; application pools never do (see Open).
func WithMultiStatements() Option {
	return func(o *options) { o.multiStatements = true }
}

// Open returns a bun.DB for dsn (a postgres:// URL) on pgx's database/sql adapter. It does
// not connect; use Ping.
//
// The pool is tuned for bun (TECH-NOTES.md pitfalls 11 and 12):
//   - pgx's QueryExecModeExec: bun interpolates every value into the SQL text, so pgx's
//     default statement cache would prepare each distinct text (an extra round trip, up to
//     512 cached statements per connection in Go and in the backend) for no reuse.
//     QueryExecModeExec sends the text with the extended protocol in one round trip.
//   - max idle = max open connections (DefaultMaxConns, or WithMaxConns): fewer idle than
//     open makes database/sql close and reopen connections under load, each a new
//     PostgreSQL backend.
//   - session parameters standard_conforming_strings=on (bun's string escaping relies on
//     it, TECH-NOTES.md pitfall 12), client_encoding=UTF8, statement_timeout
//     (StatementTimeout, or WithStatementTimeout) and idle_in_transaction_session_timeout
//     (IdleInTransactionTimeout); a value set in the DSN wins.
//   - no multi-statement path: pgx sends a statement that has no arguments with the simple
//     query protocol, which runs every statement of a "a; b" text, and bun passes none
//     (it interpolates the values into the text), so every bun Exec would take that path.
//     Open routes argument-less Execs through the extended protocol instead (one
//     Parse/Bind/Execute round trip, as with QueryExecModeExec), where PostgreSQL refuses a
//     text with several statements (42601 "cannot insert multiple commands into a prepared
//     statement"). Queries already use the extended protocol. WithMultiStatements turns
//     this off for the migration runner only.
func Open(dsn string, opts ...Option) (*bun.DB, error) {
	o := options{maxConns: DefaultMaxConns, statementTimeout: StatementTimeout}
	for _, opt := range opts {
		opt(&o)
	}
	if o.maxConns < 1 {
		o.maxConns = DefaultMaxConns
	}
	if o.statementTimeout < time.Millisecond {
		o.statementTimeout = StatementTimeout
	}
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("parse DATABASE_URL: %w", err)
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 5 * time.Second
	}
	cfg.DefaultQueryExecMode = pgx.QueryExecModeExec
	if cfg.RuntimeParams == nil {
		cfg.RuntimeParams = map[string]string{}
	}
	for k, v := range map[string]string{
		"standard_conforming_strings":         "on",
		"client_encoding":                     "UTF8",
		"statement_timeout":                   strconv.FormatInt(o.statementTimeout.Milliseconds(), 10),
		"idle_in_transaction_session_timeout": strconv.FormatInt(IdleInTransactionTimeout.Milliseconds(), 10),
	} {
		if _, set := cfg.RuntimeParams[k]; !set {
			cfg.RuntimeParams[k] = v
		}
	}
	connector := stdlib.GetConnector(*cfg)
	if !o.multiStatements {
		connector = extendedConnector{connector}
	}
	sqldb := sql.OpenDB(connector)
	sqldb.SetMaxOpenConns(o.maxConns)
	sqldb.SetMaxIdleConns(o.maxConns)
	sqldb.SetConnMaxIdleTime(5 * time.Minute)
	return bun.NewDB(sqldb, pgdialect.New(), bun.WithDiscardUnknownColumns()), nil
}

// extendedConnector wraps pgx's database/sql connector so that its connections run Exec
// without arguments with the extended protocol (see Open).
type extendedConnector struct{ driver.Connector }

// Connect returns an extendedConn.
func (c extendedConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	sc, ok := conn.(*stdlib.Conn)
	if !ok {
		conn.Close()
		return nil, fmt.Errorf("database: unexpected driver connection %T", conn)
	}
	return extendedConn{sc}, nil
}

// extendedConn is a pgx stdlib connection whose ExecContext never uses the simple query
// protocol; every other method is pgx's.
type extendedConn struct{ *stdlib.Conn }

// ExecContext runs query with the extended protocol even when it has no arguments, so that
// PostgreSQL refuses several statements in one text.
func (c extendedConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	if len(args) > 0 {
		return c.Conn.ExecContext(ctx, query, args)
	}
	pc := c.Conn.Conn()
	if pc.IsClosed() {
		return nil, driver.ErrBadConn
	}
	tag, err := pc.PgConn().ExecParams(ctx, query, nil, nil, nil, nil).Close()
	if err != nil {
		if pgconn.SafeToRetry(err) {
			return nil, driver.ErrBadConn
		}
		return nil, err
	}
	return driver.RowsAffected(tag.RowsAffected()), nil
}

// EnsureDatabase creates the database named in dsn when it does not exist, connecting to the
// `postgres` maintenance database of the same server. It is a no-op when it exists.
func EnsureDatabase(ctx context.Context, dsn string) (created bool, err error) {
	u, err := url.Parse(dsn)
	if err != nil {
		// Not err itself: a *url.Error quotes the whole URL, password included.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return false, fmt.Errorf("parse DATABASE_URL: %w", err)
	}
	name := strings.TrimPrefix(u.Path, "/")
	if name == "" {
		return false, errors.New("DATABASE_URL names no database")
	}
	admin := *u
	admin.Path = "/postgres"
	conn, err := pgx.Connect(ctx, admin.String())
	if err != nil {
		return false, fmt.Errorf("connect to maintenance database: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return false, fmt.Errorf("look up database: %w", err)
	}
	if exists {
		return false, nil
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "42P04" { // duplicate_database: created concurrently
			return false, nil
		}
		return false, fmt.Errorf("create database %s: %w", name, err)
	}
	return true, nil
}

// IsUniqueViolation reports whether err is a PostgreSQL unique_violation (SQLSTATE 23505),
// optionally on the named constraint or index.
func IsUniqueViolation(err error, constraint ...string) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "23505" {
		return false
	}
	if len(constraint) == 0 {
		return true
	}
	for _, c := range constraint {
		if pgErr.ConstraintName == c {
			return true
		}
	}
	return false
}

// IsNoRows reports whether err is sql.ErrNoRows.
func IsNoRows(err error) bool { return errors.Is(err, sql.ErrNoRows) }
