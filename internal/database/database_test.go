package database_test

import (
	"context"
	"testing"

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
