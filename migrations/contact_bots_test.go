package migrations_test

import (
	"context"
	"io/fs"
	"slices"
	"strings"
	"testing"

	"github.com/uptrace/bun"

	"github.com/botfleet/botfleet/internal/database"
	"github.com/botfleet/botfleet/internal/testenv"
	"github.com/botfleet/botfleet/migrations"
)

// contactBotsMigration is the migration under test: one person across bots.
const contactBotsMigration = "20261203060000_contact_bots.tx.up.sql"

// applyFiles runs the embedded migration files for which keep is true, in name order, each
// in its own transaction (as bun/migrate runs a .tx. file).
func applyFiles(t *testing.T, ctx context.Context, db *bun.DB, keep func(name string) bool) {
	t.Helper()
	names, err := fs.Glob(migrations.FS(), "*.sql")
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(names)
	for _, name := range names {
		if !keep(name) {
			continue
		}
		b, err := fs.ReadFile(migrations.FS(), name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.ExecContext(ctx, "BEGIN;\n"+string(b)+"\n;COMMIT"); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
}

// TestContactBotsMigration runs data of the old schema (one contact per bot and chat)
// through the migration that makes a contact one person across bots, and checks that the
// two contacts of one Telegram user at two bots of a tenant become one contact with two
// links, that nothing pointing at the merged contact is lost (messages, broadcast
// recipients, conversations, topic unsubscriptions, verification codes, link tokens), and
// that other tenants' and other users' contacts are left alone.
func TestContactBotsMigration(t *testing.T) {
	ctx := context.Background()
	db, err := database.Open(testenv.DBURL(t), database.WithMultiStatements())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// An empty schema, then every migration before the one under test.
	if _, err := db.ExecContext(ctx, "DROP SCHEMA public CASCADE; CREATE SCHEMA public"); err != nil {
		t.Fatal(err)
	}
	applyFiles(t, ctx, db, func(name string) bool { return name < contactBotsMigration })

	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := db.ExecContext(ctx, q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	const (
		t1 = "10000000-0000-0000-0000-000000000001"
		t2 = "10000000-0000-0000-0000-000000000002"
		bA = "20000000-0000-0000-0000-00000000000a"
		bB = "20000000-0000-0000-0000-00000000000b"
		bC = "20000000-0000-0000-0000-00000000000c"
		pA = "30000000-0000-0000-0000-0000000000a1" // user 100 at bot A: the oldest, survives
		pB = "30000000-0000-0000-0000-0000000000b1" // user 100 at bot B: merged into pA
		qA = "30000000-0000-0000-0000-0000000000a2" // user 200 at bot A only
		xC = "30000000-0000-0000-0000-0000000000c1" // user 100 at tenant 2's bot C
		br = "40000000-0000-0000-0000-000000000001"
		tp = "50000000-0000-0000-0000-000000000001"
	)
	exec(`INSERT INTO tenants (id, name) VALUES (?, 'one'), (?, 'two')`, t1, t2)
	exec(`INSERT INTO bots (id, tenant_id, name, telegram_bot_id, username, token_sealed, webhook_secret_hash) VALUES
		(?, ?, 'A', 1, 'a_bot', '\x00', '\x00'), (?, ?, 'B', 2, 'b_bot', '\x00', '\x00'), (?, ?, 'C', 3, 'c_bot', '\x00', '\x00')`,
		bA, t1, bB, t1, bC, t2)
	exec(`INSERT INTO contacts (id, tenant_id, bot_id, telegram_chat_id, telegram_user_id, telegram_username, first_name,
		last_name, blocked, blocked_at, opted_out, opted_out_at, tags, attributes, external_id, email, phone, last_seen_at, created_at) VALUES
		(?, ?, ?, 100, 100, 'old_name', 'Ann', 'Old', false, NULL, true, '2026-01-05', '{a,x}', '{"k": 1, "only_a": "A"}', 'ext-1', '', '', '2026-01-10', '2026-01-01'),
		(?, ?, ?, 100, 100, 'new_name', 'Anna', 'New', true, '2026-02-03', false, NULL, '{b,x}', '{"k": 2, "only_b": "B"}', 'ext-2', 'ann@example.com', '', '2026-02-10', '2026-02-01'),
		(?, ?, ?, 200, 200, 'quinn', 'Quinn', '', false, NULL, false, NULL, '{}', '{}', NULL, '', '+100', '2026-01-20', '2026-01-02'),
		(?, ?, ?, 100, 100, 'other', 'Other', '', true, '2026-03-01', false, NULL, '{c}', '{}', 'ext-1', '', '', '2026-03-01', '2026-01-01')`,
		pA, t1, bA, pB, t1, bB, qA, t1, bA, xC, t2, bC)
	exec(`INSERT INTO messages (tenant_id, bot_id, contact_id, chat_id, direction, kind, text, status, created_at) VALUES
		(?, ?, ?, 100, 'inbound', 'inbound', 'hi A', 'received', '2026-01-10'),
		(?, ?, ?, 100, 'inbound', 'inbound', 'hi B', 'received', '2026-02-10'),
		(?, ?, ?, 100, 'outbound', 'message', 'to B', 'sent', '2026-02-11'),
		(?, ?, ?, 200, 'inbound', 'inbound', 'hi Q', 'received', '2026-01-20'),
		(?, ?, ?, 100, 'inbound', 'inbound', 'hi C', 'received', '2026-03-01')`,
		t1, bA, pA, t1, bB, pB, t1, bB, pB, t1, bA, qA, t2, bC, xC)
	exec(`INSERT INTO broadcasts (id, tenant_id, bot_id, name, message_text, status) VALUES (?, ?, ?, 'b', 'hello', 'completed')`, br, t1, bB)
	exec(`INSERT INTO broadcast_recipients (broadcast_id, contact_id, chat_id, status) VALUES (?, ?, 100, 'sent')`, br, pB)
	exec(`INSERT INTO conversations (contact_id, tenant_id, bot_id, last_message_at, assigned_to) VALUES
		(?, ?, ?, '2026-01-10', NULL), (?, ?, ?, '2026-02-10', 'agent')`, pA, t1, bA, pB, t1, bB)
	exec(`INSERT INTO topics (id, tenant_id, name) VALUES (?, ?, 'alerts')`, tp, t1)
	exec(`INSERT INTO contact_topic_unsubscriptions (contact_id, topic_id) VALUES (?, ?), (?, ?)`, pA, tp, pB, tp)
	exec(`INSERT INTO verification_codes (tenant_id, external_id, bot_id, contact_id, code_hash, expires_at) VALUES
		(?, 'acct-9', ?, ?, '\x01', now() + interval '10 minutes')`, t1, bB, pB)
	exec(`INSERT INTO link_tokens (tenant_id, bot_id, external_id, token_hash, expires_at, used_at, used_by_contact_id) VALUES
		(?, ?, 'ext-2', '\x02', now(), now(), ?)`, t1, bB, pB)

	applyFiles(t, ctx, db, func(name string) bool { return name == contactBotsMigration })

	// Tenant 1: two persons; pA survived with pB's links, data and references.
	var ids []string
	if err := db.NewRaw("SELECT id::text FROM contacts WHERE tenant_id = ? ORDER BY id", t1).Scan(ctx, &ids); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ids, []string{pA, qA}) {
		t.Fatalf("tenant 1 contacts = %v, want [pA qA]", ids)
	}
	var p struct {
		BotID      string   `bun:"bot_id"`
		Username   string   `bun:"telegram_username"`
		FirstName  string   `bun:"first_name"`
		Tags       []string `bun:"tags,array"`
		Attributes string   `bun:"attributes"`
		ExternalID string   `bun:"external_id"`
		Email      string   `bun:"email"`
		LastSeen   string   `bun:"last_seen"`
		Created    string   `bun:"created"`
	}
	err = db.NewRaw(`SELECT bot_id::text, telegram_username, first_name, tags, attributes::text, external_id, email,
		to_char(last_seen_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS last_seen, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS created
		FROM contacts WHERE id = ?`, pA).Scan(ctx, &p)
	if err != nil {
		t.Fatal(err)
	}
	if p.BotID != bA || p.Username != "new_name" || p.FirstName != "Anna" || !slices.Equal(p.Tags, []string{"a", "b", "x"}) ||
		p.Attributes != `{"k": 1, "only_a": "A", "only_b": "B"}` || p.ExternalID != "ext-1" || p.Email != "ann@example.com" ||
		p.LastSeen != "2026-02-10" || p.Created != "2026-01-01" {
		t.Fatalf("merged person = %+v", p)
	}

	type link struct {
		ContactID     string `bun:"contact_id"`
		BotID         string `bun:"bot_id"`
		ChatID        int64  `bun:"telegram_chat_id"`
		Started       string `bun:"started"`
		LastInbound   string `bun:"last_inbound"`
		Blocked       bool   `bun:"blocked"`
		OptedOut      bool   `bun:"opted_out"`
		OptedOutAtSet bool   `bun:"opted_out_at_set"`
	}
	var links []link
	err = db.NewRaw(`SELECT contact_id::text, bot_id::text, telegram_chat_id, to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS started,
		COALESCE(to_char(last_inbound_at AT TIME ZONE 'UTC', 'YYYY-MM-DD'), '') AS last_inbound, blocked, opted_out,
		opted_out_at IS NOT NULL AS opted_out_at_set
		FROM contact_bots ORDER BY contact_id, bot_id`).Scan(ctx, &links)
	if err != nil {
		t.Fatal(err)
	}
	want := []link{
		{pA, bA, 100, "2026-01-01", "2026-01-10", false, true, true},
		{pA, bB, 100, "2026-02-01", "2026-02-10", true, false, false},
		{qA, bA, 200, "2026-01-02", "2026-01-20", false, false, false},
		{xC, bC, 100, "2026-01-01", "2026-03-01", true, false, false},
	}
	if !slices.Equal(links, want) {
		t.Fatalf("links =\n%+v\nwant\n%+v", links, want)
	}

	count := func(q string, args ...any) int {
		t.Helper()
		var n int
		if err := db.NewRaw(q, args...).Scan(ctx, &n); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		return n
	}
	for q, want := range map[string]int{
		"SELECT count(*) FROM messages":                                                                5,
		"SELECT count(*) FROM messages WHERE contact_id = '" + pA + "'":                                3,
		"SELECT count(*) FROM messages WHERE contact_id IS NULL":                                       0,
		"SELECT count(*) FROM broadcast_recipients WHERE contact_id = '" + pA + "'":                    1,
		"SELECT count(*) FROM conversations":                                                           1,
		"SELECT count(*) FROM conversations WHERE contact_id = '" + pA + "' AND assigned_to = 'agent'": 1,
		"SELECT count(*) FROM contact_topic_unsubscriptions WHERE contact_id = '" + pA + "'":           1,
		"SELECT count(*) FROM verification_codes WHERE contact_id = '" + pA + "'":                      1,
		"SELECT count(*) FROM link_tokens WHERE used_by_contact_id = '" + pA + "'":                     1,
		"SELECT count(*) FROM contacts WHERE id = '" + pB + "'":                                        0,
	} {
		if got := count(q); got != want {
			t.Errorf("%s = %d, want %d", q, got, want)
		}
	}
	// Tenant 2's contact of the same Telegram user is its own person, unchanged.
	var other struct {
		Username   string `bun:"telegram_username"`
		ExternalID string `bun:"external_id"`
	}
	if err := db.NewRaw("SELECT telegram_username, external_id FROM contacts WHERE id = ?", xC).Scan(ctx, &other); err != nil {
		t.Fatal(err)
	}
	if other.Username != "other" || other.ExternalID != "ext-1" {
		t.Fatalf("tenant 2 contact = %+v", other)
	}
	// The new schema: one person per (tenant, chat); the per-bot flags are gone from contacts.
	_, err = db.ExecContext(ctx, "INSERT INTO contacts (tenant_id, bot_id, telegram_chat_id) VALUES (?, ?, 100)", t1, bB)
	if err == nil || !database.IsUniqueViolation(err) {
		t.Fatalf("second contact of (tenant, chat): err = %v, want a unique violation", err)
	}
	if _, err = db.ExecContext(ctx, "SELECT blocked FROM contacts"); err == nil || !strings.Contains(err.Error(), "blocked") {
		t.Fatalf("contacts.blocked still exists: err = %v", err)
	}
}
