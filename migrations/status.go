package migrations

import (
	"context"
	"fmt"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/migrate"
)

// Pending returns the names of the embedded migrations that db has not applied yet, in the
// order Apply would run them (all of them when the migration table bun_migrations does
// not exist). It changes nothing. An error means the database could not be queried.
func Pending(ctx context.Context, db *bun.DB) ([]string, error) {
	ms := migrate.NewMigrations()
	if err := ms.Discover(sqlFS); err != nil {
		return nil, fmt.Errorf("discover migrations: %w", err)
	}
	var table *string
	if err := db.QueryRowContext(ctx, "SELECT to_regclass('bun_migrations')::text").Scan(&table); err != nil {
		return nil, fmt.Errorf("migrations: status: %w", err)
	}
	all := ms.Sorted()
	if table == nil {
		names := make([]string, 0, len(all))
		for _, m := range all {
			names = append(names, m.String())
		}
		return names, nil
	}
	withStatus, err := migrate.NewMigrator(db, ms).MigrationsWithStatus(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrations: status: %w", err)
	}
	var names []string
	for _, m := range withStatus.Unapplied() {
		names = append(names, m.String())
	}
	return names, nil
}
