package migrations_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/botfleet/botfleet/internal/database"
	"github.com/botfleet/botfleet/internal/testenv"
	"github.com/botfleet/botfleet/migrations"
)

func TestPending(t *testing.T) {
	ctx := context.Background()
	db, err := database.Open(testenv.DBURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()

	got, err := migrations.Pending(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 0 {
		t.Fatalf("migrated database: pending = %v, want none", got)
	}

	var last string
	if err := db.QueryRowContext(ctx, "DELETE FROM bun_migrations WHERE id = (SELECT max(id) FROM bun_migrations) RETURNING name").Scan(&last); err != nil {
		t.Fatal(err)
	}
	got, err = migrations.Pending(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || !strings.HasPrefix(got[0], last+"_") {
		t.Fatalf("one migration unmarked: pending = %v, want [%s]", got, last)
	}

	want := got[0]
	if _, err := db.ExecContext(ctx, "DROP TABLE bun_migrations, bun_migration_locks"); err != nil {
		t.Fatal(err)
	}
	got, err = migrations.Pending(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) < 5 || got[len(got)-1] != want || !slices.IsSorted(got) {
		t.Fatalf("no migration table: pending = %v, want every embedded migration in order", got)
	}
}
