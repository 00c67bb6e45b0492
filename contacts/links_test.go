package contacts_test

import (
	"context"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/botfleet/botfleet/contacts"
	"github.com/botfleet/botfleet/internal/testenv"
)

// fixture inserts a tenant with two bots straight into PostgreSQL.
func fixture(t *testing.T, db *bun.DB) (tenant, botA, botB uuid.UUID) {
	t.Helper()
	ctx := context.Background()
	tenant, botA, botB = uuid.New(), uuid.New(), uuid.New()
	if _, err := db.ExecContext(ctx, "INSERT INTO tenants (id, name) VALUES (?, 'T')", tenant); err != nil {
		t.Fatal(err)
	}
	for i, b := range []uuid.UUID{botA, botB} {
		if _, err := db.ExecContext(ctx, `INSERT INTO bots (id, tenant_id, name, telegram_bot_id, username, token_sealed, webhook_secret_hash)
			VALUES (?, ?, 'B', ?, 'b', '\x00', '\x00')`, b, tenant, rand.Int64N(1<<40)+int64(i)); err != nil {
			t.Fatal(err)
		}
	}
	return tenant, botA, botB
}

// TestUpsertMany_OnePersonTwoLinks: the rows of one user at two bots, in one batch, make one
// contact with two links; identities merge in slice order, each link keeps its own
// last_inbound_at and blocked state; another tenant's contact of the same chat is apart.
func TestUpsertMany_OnePersonTwoLinks(t *testing.T) {
	db := testenv.DB(t)
	svc := contacts.New(db)
	ctx := context.Background()
	tenant, botA, botB := fixture(t, db)
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	cs, err := svc.UpsertManyFromTelegram(ctx, db, []contacts.TelegramUpsert{
		{TenantID: tenant, BotID: botA, Identity: contacts.Identity{ChatID: 5, UserID: 5, FirstName: "Ann"}, SeenAt: t0.Add(time.Minute), Inbound: true},
		{TenantID: tenant, BotID: botB, Identity: contacts.Identity{ChatID: 5, UserID: 5, FirstName: "Anna", Username: "ann"}, SeenAt: t0.Add(2 * time.Minute), Inbound: true},
		{TenantID: tenant, BotID: botA, Identity: contacts.Identity{ChatID: 5}, SeenAt: t0}, // a callback: no sender, not inbound
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 2 || cs[0].ID != cs[1].ID || cs[0].BotID == cs[1].BotID || cs[0].FirstName != "Anna" || cs[0].TelegramUsername != "ann" {
		t.Fatalf("upsert = %+v, want one person at two bots", cs)
	}
	if _, err := svc.SetBlockedMany(ctx, db, []contacts.BlockedChange{{ContactID: cs[0].ID, BotID: botB, Blocked: true}}); err != nil {
		t.Fatal(err)
	}
	atA, err := svc.GetByChat(ctx, botA, 5)
	if err != nil {
		t.Fatal(err)
	}
	atB, err := svc.GetByChat(ctx, botB, 5)
	if err != nil {
		t.Fatal(err)
	}
	if atA.ID != atB.ID || atA.Blocked || !atB.Blocked || atA.BotID != botA || atB.BotID != botB || len(atA.Bots) != 2 {
		t.Fatalf("at A %+v, at B %+v", atA, atB)
	}
	c, err := svc.Get(ctx, tenant, atA.ID)
	if err != nil {
		t.Fatal(err)
	}
	if c.BotID != botA || c.Blocked || len(c.Bots) != 2 {
		t.Fatalf("Get = %+v: want the first bot (A) on top, not blocked there, two links", c)
	}
	for _, l := range c.Bots {
		want := t0.Add(time.Minute)
		if l.BotID == botB {
			want = t0.Add(2 * time.Minute)
		}
		if !l.LastInboundAt.Equal(want) || l.Blocked != (l.BotID == botB) {
			t.Fatalf("link %+v: want last_inbound_at %v", l, want)
		}
	}
	if _, ok := c.Link(uuid.New()); ok {
		t.Fatal("Link of a bot the person never wrote to: ok")
	}
	if l, ok := c.LatestLink(); !ok || l.BotID != botB {
		t.Fatalf("LatestLink = %+v, %v; want the link to B (the latest inbound message)", l, ok)
	}

	other, _, _ := fixture(t, db)
	var botC uuid.UUID
	if err := db.NewRaw("SELECT id FROM bots WHERE tenant_id = ? LIMIT 1", other).Scan(ctx, &botC); err != nil {
		t.Fatal(err)
	}
	oc, err := svc.UpsertFromTelegram(ctx, db, other, botC, contacts.Identity{ChatID: 5, UserID: 5, FirstName: "Ann"}, t0)
	if err != nil {
		t.Fatal(err)
	}
	if oc.ID == c.ID {
		t.Fatal("another tenant's contact of the same chat is the same contact")
	}
}

// TestUpsertMany_ConcurrentBotsNoDeadlock: processors of two bots upsert the same persons
// at the same time, each in its own transaction and in random order; the persons are
// locked in one order and the links in another, so no transaction deadlocks and every
// person ends with exactly one link per bot.
func TestUpsertMany_ConcurrentBotsNoDeadlock(t *testing.T) {
	db := testenv.DB(t)
	svc := contacts.New(db)
	ctx := context.Background()
	tenant, botA, botB := fixture(t, db)
	const chats, rounds = 200, 8
	var wg sync.WaitGroup
	errs := make(chan error, 2*rounds)
	for _, bot := range []uuid.UUID{botA, botB, botA, botB} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range rounds {
				rows := make([]contacts.TelegramUpsert, chats)
				for i, chat := range rand.Perm(chats) {
					rows[i] = contacts.TelegramUpsert{TenantID: tenant, BotID: bot, Identity: contacts.Identity{ChatID: int64(chat + 1), UserID: int64(chat + 1)},
						SeenAt: time.Now(), Inbound: true}
				}
				err := db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
					_, err := svc.UpsertManyFromTelegram(ctx, tx, rows)
					return err
				})
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent upserts: %v", err)
	}
	var n struct {
		Persons int `bun:"persons"`
		Links   int `bun:"links"`
	}
	if err := db.NewRaw(`SELECT (SELECT count(*) FROM contacts WHERE tenant_id = ?) AS persons,
		(SELECT count(*) FROM contact_bots WHERE tenant_id = ?) AS links`, tenant, tenant).Scan(ctx, &n); err != nil {
		t.Fatal(err)
	}
	if n.Persons != chats || n.Links != 2*chats {
		t.Fatalf("%d persons, %d links; want %d and %d", n.Persons, n.Links, chats, 2*chats)
	}
}
