package telegram_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/botfleet/botfleet/contacts"
	"github.com/botfleet/botfleet/telegram"
	"github.com/botfleet/botfleet/tenant"
)

// templateQueryCounter counts the queries that read reply_templates.
type templateQueryCounter struct{ n atomic.Int64 }

func (c *templateQueryCounter) BeforeQuery(ctx context.Context, ev *bun.QueryEvent) context.Context {
	if strings.HasPrefix(strings.TrimSpace(ev.Query), "SELECT") && strings.Contains(ev.Query, "reply_templates") {
		c.n.Add(1)
	}
	return ctx
}

func (c *templateQueryCounter) AfterQuery(context.Context, *bun.QueryEvent) {}

// lastReply returns the text and parse mode of the newest reply to chat of bot.
func (e *botEnv) lastReply(t *testing.T, botID uuid.UUID, chat int64) (string, string) {
	t.Helper()
	var m contacts.Message
	err := e.db.NewSelect().Model(&m).Where("bot_id = ?", botID).Where("chat_id = ?", chat).
		Where("kind = ?", contacts.KindReply).OrderExpr("created_at DESC").Limit(1).Scan(context.Background())
	if err != nil {
		t.Fatalf("reply to %d: %v", chat, err)
	}
	return m.Text, m.ParseMode
}

// TestService_ReplyTemplates_Cache: the event processor reads the templates of a batch's bots
// in one query, then from memory; an edit made by another process (another Service on the
// same PostgreSQL and Redis) reaches it through the bot cache's pub/sub invalidation.
func TestService_ReplyTemplates_Cache(t *testing.T) {
	e := newBotEnv(t)
	ctx := context.Background()
	tn := e.tenant(t, "acme")
	editorKey := tenant.Key{ID: uuid.New(), Name: "ci", Scopes: []string{tenant.ScopeRead, tenant.ScopeWrite}}
	counter := &templateQueryCounter{}
	worker := e.newService(t, e.db.WithQueryHook(counter), e.queue) // the worker's queries are counted
	defer worker.Close()
	worker.WarmBotCache()
	waitFor(t, 3*time.Second, "subscription up", worker.BotCacheSubscribed)

	b1, b2 := e.hookedBot(t, tn, "Shop"), e.hookedBot(t, tn, "Desk")
	if _, _, err := e.svc.PutTemplate(ctx, tn, b1.ID, telegram.TemplateWelcome, editorKey,
		telegram.TemplateEdit{Text: "Welcome *{first_name}* {last_name|}\\!", ParseMode: "MarkdownV2"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.svc.PutTemplate(ctx, tn, b2.ID, "status", editorKey,
		telegram.TemplateEdit{Text: "{bot_name} is up, {username}. Plan: {attributes.plan|none}.", Command: "status"}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // let the invalidations of the edits pass

	next := int64(100)
	start := func(b hookedBot, text string) {
		next++
		if err := e.svc.Ingest(ctx, b.ID, b.secret, []byte(messageUpdate(next, 42, "private", ann, text, cmdEntity(strings.Fields(text)[0])))); err != nil {
			t.Fatal(err)
		}
	}
	start(b1, "/start")
	start(b2, "/status")
	start(b2, "/start")
	if _, err := worker.ProcessPending(ctx); err != nil {
		t.Fatal(err)
	}
	if n := counter.n.Load(); n != 1 {
		t.Fatalf("%d template queries for one batch of two bots, want 1", n)
	}
	if text, mode := e.lastReply(t, b1.ID, 42); text != "Welcome *Ann* Lee\\!" || mode != "MarkdownV2" {
		t.Fatalf("b1 /start: %q %q", text, mode)
	}
	replies := e.messages(t, b2.ID, 42)
	var got []string
	for _, m := range replies {
		if m.Kind == contacts.KindReply {
			got = append(got, m.Text)
		}
	}
	if len(got) != 2 || got[0] != "Desk is up, annlee. Plan: none." || got[1] != telegram.StartReplyText("Ann", "Desk") {
		t.Fatalf("b2 replies: %q", got)
	}

	// Cached: the next batch reads no template.
	start(b1, "/start")
	if _, err := worker.ProcessPending(ctx); err != nil {
		t.Fatal(err)
	}
	if n := counter.n.Load(); n != 1 {
		t.Fatalf("%d template queries after a cached batch, want still 1", n)
	}

	// An edit in the other process reaches the worker within a second.
	if _, _, err := e.svc.PutTemplate(ctx, tn, b1.ID, telegram.TemplateWelcome, editorKey,
		telegram.TemplateEdit{Text: "Hey {first_name}"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, "edited welcome used by the other process", func() bool {
		start(b1, "/start")
		if _, err := worker.ProcessPending(ctx); err != nil {
			t.Fatal(err)
		}
		text, _ := e.lastReply(t, b1.ID, 42)
		return text == "Hey Ann"
	})
}

// TestService_TemplateLockExpiry: the lock's expiry follows the injected clock.
func TestService_TemplateLockExpiry(t *testing.T) {
	e := newBotEnv(t)
	ctx := context.Background()
	tn := e.tenant(t, "acme")
	b := e.hookedBot(t, tn, "Shop")
	now := time.Date(2026, 1, 1, 23, 55, 0, 0, time.UTC)
	e.svc.SetTemplateClock(func() time.Time { return now })
	alice := tenant.Key{ID: uuid.New(), Name: "alice", Scopes: []string{tenant.ScopeRead, tenant.ScopeWrite}}
	bob := tenant.Key{ID: uuid.New(), Name: "bob", Scopes: []string{tenant.ScopeRead, tenant.ScopeWrite}}

	l, err := e.svc.LockTemplate(ctx, tn, b.ID, telegram.TemplateHelp, alice)
	if err != nil || l.Holder != "alice" || !l.ExpiresAt.Equal(now.Add(telegram.TemplateLockTTL)) {
		t.Fatalf("lock: %+v %v", l, err)
	}
	edit := telegram.TemplateEdit{Text: "bob's help"}
	if _, _, err := e.svc.PutTemplate(ctx, tn, b.ID, telegram.TemplateHelp, bob, edit); !errors.Is(err, telegram.ErrTemplateLocked) {
		t.Fatalf("bob while locked: %v", err)
	}
	if _, err := e.svc.LockTemplate(ctx, tn, b.ID, telegram.TemplateHelp, bob); !errors.Is(err, telegram.ErrTemplateLocked) || !strings.Contains(err.Error(), `"alice"`) {
		t.Fatalf("bob takes the lock: %v", err)
	}
	now = now.Add(telegram.TemplateLockTTL) // exactly at expires_at: expired
	if _, _, err := e.svc.PutTemplate(ctx, tn, b.ID, telegram.TemplateHelp, bob, edit); err != nil {
		t.Fatalf("bob after expiry: %v", err)
	}
	l, err = e.svc.LockTemplate(ctx, tn, b.ID, telegram.TemplateHelp, bob)
	if err != nil || l.Holder != "bob" || !l.AcquiredAt.Equal(now) {
		t.Fatalf("bob locks after expiry: %+v %v", l, err)
	}
}

// TestService_ReplyTemplates_Fallback: a template that cannot be sent to one contact once its
// values are inserted (over 4,096 characters here) answers that contact with the built-in
// default; other contacts get the template.
func TestService_ReplyTemplates_Fallback(t *testing.T) {
	e := newBotEnv(t)
	ctx := context.Background()
	tn := e.tenant(t, "acme")
	b := e.hookedBot(t, tn, "Shop")
	ed := tenant.Key{ID: uuid.New(), Name: "ci"}
	if _, _, err := e.svc.PutTemplate(ctx, tn, b.ID, telegram.TemplateWelcome, ed,
		telegram.TemplateEdit{Text: "Hi {first_name}, about you: {attributes.bio|nothing yet}"}); err != nil {
		t.Fatal(err)
	}
	// Ann's contact exists with a huge bio; Bob has none.
	ev := e.ingest(t, b, 1, messageUpdate(1, 42, "private", ann, "hello", "[]"))
	e.mustProcess(t, ev.ID)
	if _, err := e.db.NewRaw("UPDATE contacts SET attributes = jsonb_build_object('bio', repeat('x', 5000)) WHERE bot_id = ? AND telegram_chat_id = 42", b.ID).Exec(ctx); err != nil {
		t.Fatal(err)
	}
	bob := `{"id":43,"is_bot":false,"first_name":"Bob"}`
	e.ingest(t, b, 2, messageUpdate(2, 42, "private", ann, "/start", cmdEntity("/start")))
	e.ingest(t, b, 3, messageUpdate(3, 43, "private", bob, "/start", cmdEntity("/start")))
	e.processAll(t)
	if text, _ := e.lastReply(t, b.ID, 42); text != telegram.StartReplyText("Ann", "Shop") {
		t.Fatalf("Ann (too long): %q", text)
	}
	if text, _ := e.lastReply(t, b.ID, 43); text != "Hi Bob, about you: nothing yet" {
		t.Fatalf("Bob: %q", text)
	}
}
