package database_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/uptrace/bun"

	"github.com/botfleet/botfleet/internal/database"
	"github.com/botfleet/botfleet/internal/testenv"
)

// TestOpen checks the pool settings and session parameters every connection gets.
func TestOpen(t *testing.T) {
	ctx := context.Background()
	url := testenv.DBURL(t)

	db, err := database.Open(url, database.WithMaxConns(3))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if got := db.Stats().MaxOpenConnections; got != 3 {
		t.Fatalf("MaxOpenConnections = %d, want 3", got)
	}
	for name, want := range map[string]string{
		"standard_conforming_strings":         "on",
		"client_encoding":                     "UTF8",
		"statement_timeout":                   "30s",
		"idle_in_transaction_session_timeout": "1min",
	} {
		var got string
		if err := db.NewRaw("SELECT current_setting(?)", name).Scan(ctx, &got); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	// bun interpolates values: with QueryExecModeExec nothing is prepared on the server.
	for i := range 5 {
		var n int
		if err := db.NewRaw("SELECT ?::int + 1", i).Scan(ctx, &n); err != nil || n != i+1 {
			t.Fatalf("select = %d, %v", n, err)
		}
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var prepared int
	if err := conn.QueryRowContext(ctx, "SELECT count(*) FROM pg_prepared_statements").Scan(&prepared); err != nil {
		t.Fatal(err)
	}
	if prepared != 0 {
		t.Fatalf("%d prepared statements on a connection, want 0 (QueryExecModeExec)", prepared)
	}

	// A DSN setting wins over the default.
	db2, err := database.Open(url + "&statement_timeout=1234")
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	var got string
	if err := db2.NewRaw("SELECT current_setting('statement_timeout')").Scan(ctx, &got); err != nil || got != "1234ms" {
		t.Fatalf("statement_timeout from the DSN = %q, %v", got, err)
	}
	if got := db2.Stats().MaxOpenConnections; got != database.DefaultMaxConns {
		t.Fatalf("default MaxOpenConnections = %d, want %d", got, database.DefaultMaxConns)
	}
}

// TestOpen_Session proves the session every application connection gets (issue 6, "PostgreSQL
// session"): the settings as PostgreSQL reports them with SHOW, and no way to run a second,
// stacked statement, neither through bun (whose Exec has no arguments, which pgx would send
// with the simple protocol) nor through database/sql, nor through a value bun interpolates.
func TestOpen_Session(t *testing.T) {
	ctx := context.Background()
	url := testenv.DBURL(t)
	db, err := database.Open(url, database.WithStatementTimeout(1500*time.Millisecond), database.WithMaxConns(1))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for name, want := range map[string]string{
		"standard_conforming_strings": "on",
		"client_encoding":             "UTF8",
		"statement_timeout":           "1500ms",
	} {
		var got string
		if err := db.QueryRowContext(ctx, "SHOW "+name).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("SHOW %s = %q, want %q", name, got, want)
		}
	}

	if _, err := db.ExecContext(ctx, "CREATE TABLE victim (id int)"); err != nil {
		t.Fatal(err)
	}
	stacked := []struct {
		name string
		run  func() error
	}{
		{"database/sql Exec", func() error { _, err := db.DB.ExecContext(ctx, "SELECT 1; DROP TABLE victim"); return err }},
		{"bun raw Exec", func() error { _, err := db.NewRaw("SELECT 1; DROP TABLE victim").Exec(ctx); return err }},
		{"bun Exec in a transaction", func() error {
			return db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
				_, err := tx.ExecContext(ctx, "SELECT 1; DROP TABLE victim")
				return err
			})
		}},
		{"database/sql Query", func() error {
			rows, err := db.DB.QueryContext(ctx, "SELECT 1; DROP TABLE victim")
			if err == nil {
				rows.Close()
			}
			return err
		}},
	}
	for _, st := range stacked {
		err := st.run()
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "42601" {
			t.Errorf("%s: a stacked statement gave %v, want SQLSTATE 42601 (cannot insert multiple commands into a prepared statement)", st.name, err)
		}
	}
	// A value with SQL in it stays a value (bun escapes it; standard_conforming_strings=on
	// makes backslashes plain characters).
	for _, v := range []string{`x'); DROP TABLE victim; --`, `\'; DROP TABLE victim; --`, `\\`, "a\tb"} {
		var got string
		if err := db.NewRaw("SELECT ?", v).Scan(ctx, &got); err != nil || got != v {
			t.Errorf("SELECT %q = %q, %v", v, got, err)
		}
		if _, err := db.NewRaw("SELECT ?", v).Exec(ctx); err != nil {
			t.Errorf("Exec SELECT %q: %v", v, err)
		}
	}
	var exists bool
	if err := db.QueryRowContext(ctx, "SELECT to_regclass('victim') IS NOT NULL").Scan(&exists); err != nil || !exists {
		t.Fatalf("the table was dropped by a stacked statement (exists=%v, %v)", exists, err)
	}
	// Exec without arguments still works and reports rows affected.
	res, err := db.NewRaw("INSERT INTO victim VALUES (1), (2)").Exec(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := res.RowsAffected(); n != 2 {
		t.Fatalf("rows affected %d, want 2", n)
	}
	// The statement timeout is in force.
	_, err = db.ExecContext(ctx, "SELECT pg_sleep(3)")
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "57014" {
		t.Fatalf("pg_sleep(3) with a 1.5s statement_timeout: %v, want SQLSTATE 57014", err)
	}

	// The migration runner's pool (WithMultiStatements) runs multi-statement files.
	mig, err := database.Open(url, database.WithMultiStatements())
	if err != nil {
		t.Fatal(err)
	}
	defer mig.Close()
	if _, err := mig.ExecContext(ctx, "CREATE TABLE m1 (id int); CREATE TABLE m2 (id int)"); err != nil {
		t.Fatalf("multi-statement migration text: %v", err)
	}
}
