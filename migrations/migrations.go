// Package migrations embeds botfleet's SQL migrations and applies them with bun/migrate.
//
// Files are named YYYYMMDDHHMMSS_description.tx.up.sql (lowercase; the .tx. infix runs the
// file in one transaction). They are forward-only: never edit a file that has been applied.
package migrations

import (
	"context"
	"embed"
	"fmt"
	"io/fs"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/migrate"
)

//go:embed *.sql
var sqlFS embed.FS

// advisoryLockKey serialises concurrent `botfleet migrate` runs (bun's own Lock is not blocking).
const advisoryLockKey = 7_402_113_551

// Apply runs every embedded migration not yet applied, in one pg_advisory_lock so that two
// concurrent callers do not race. It is safe to run twice: the second run applies nothing.
// It returns the names of the migrations applied by this call.
//
// The files hold several statements each, which PostgreSQL runs only through its simple
// query protocol: open db with database.WithMultiStatements (as `botfleet migrate` and
// testenv do). Application pools refuse stacked statements; the migration files are the one
// trusted exception, embedded in the binary.
func Apply(ctx context.Context, db *bun.DB) ([]string, error) {
	ms := migrate.NewMigrations()
	if err := ms.Discover(sqlFS); err != nil {
		return nil, fmt.Errorf("discover migrations: %w", err)
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrations: connect: %w", err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock(?)", advisoryLockKey); err != nil {
		return nil, fmt.Errorf("migrations: lock: %w", err)
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock(?)", advisoryLockKey) //nolint:errcheck

	m := migrate.NewMigrator(db, ms, migrate.WithMarkAppliedOnSuccess(true))
	if err := m.Init(ctx); err != nil {
		return nil, fmt.Errorf("migrations: init: %w", err)
	}
	group, err := m.Migrate(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrations: migrate: %w", err)
	}
	var names []string
	if group != nil {
		for _, mig := range group.Migrations {
			names = append(names, mig.String())
		}
	}
	return names, nil
}

// FS returns the embedded migration files.
func FS() fs.FS { return sqlFS }
