package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/uptrace/bun"

	"github.com/botfleet/botfleet/internal/config"
	"github.com/botfleet/botfleet/internal/database"
	"github.com/botfleet/botfleet/migrations"
)

// PostgreSQL error codes that mean "run botfleet migrate"
// (postgresql.org/docs/15/errcodes-appendix.html).
const (
	pgInvalidCatalogName = "3D000" // the database does not exist
	pgUndefinedTable     = "42P01" // a table of the schema does not exist
)

// errNotMigrated is returned (wrapped) when the database lacks migrations.
var errNotMigrated = errors.New("database not migrated")

// explainDBError turns the PostgreSQL errors a new user meets into what to do: a missing
// database or table says "run `botfleet migrate`", an unreachable server names the
// (redacted) DATABASE_URL. Other errors are returned unchanged.
func explainDBError(err error, dsn string) error {
	if err == nil {
		return nil
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case pgInvalidCatalogName:
			return fmt.Errorf("%w: database %q does not exist: run `botfleet migrate` (it creates the database)", errNotMigrated, dbName(dsn))
		case pgUndefinedTable:
			return fmt.Errorf("%w: %s: run `botfleet migrate`", errNotMigrated, pgErr.Message)
		}
		return err
	}
	if isConnectError(err) {
		return fmt.Errorf("PostgreSQL at %s is not reachable (start it, or fix DATABASE_URL): %w", config.RedactURL(dsn), err)
	}
	return err
}

// isConnectError reports whether err is a failure to connect (as opposed to an error the
// server answered).
func isConnectError(err error) bool {
	var ce *pgconn.ConnectError
	return errors.As(err, &ce)
}

func dbName(dsn string) string {
	if u, err := url.Parse(dsn); err == nil && u.Path != "" {
		return strings.TrimPrefix(u.Path, "/")
	}
	return dsn
}

// checkMigrated returns an errNotMigrated error naming the embedded migrations that db has
// not applied ("run `botfleet migrate`"), nil when all are applied.
func checkMigrated(ctx context.Context, db *bun.DB, dsn string) error {
	pending, err := migrations.Pending(ctx, db)
	if err != nil {
		return explainDBError(err, dsn)
	}
	if len(pending) > 0 {
		return fmt.Errorf("%w: %d migration(s) not applied (%s): run `botfleet migrate`",
			errNotMigrated, len(pending), strings.Join(pending, ", "))
	}
	return nil
}

// openMigratedDB opens DATABASE_URL for a one-shot command (tenant create, ...): it must be
// reachable and fully migrated, otherwise the error says what to do.
func openMigratedDB(ctx context.Context, cfg config.Config) (*bun.DB, error) {
	dsn := cfg.DatabaseURL.Reveal()
	db, err := database.Open(dsn, database.WithMaxConns(2))
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := db.PingContext(pctx); err != nil {
		db.Close()
		return nil, explainDBError(err, dsn)
	}
	if err := checkMigrated(pctx, db, dsn); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}
