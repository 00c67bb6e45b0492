package telegram_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/botfleet/botfleet/contacts"
	"github.com/botfleet/botfleet/internal/apperr"
	"github.com/botfleet/botfleet/internal/database"
	"github.com/botfleet/botfleet/internal/page"
	"github.com/botfleet/botfleet/internal/testlog"
	"github.com/botfleet/botfleet/telegram"
	"github.com/botfleet/botfleet/telegram/tgemu"
)

// hookedBot is a registered bot with the secret_token Telegram was given.
type hookedBot struct {
	telegram.Bot
	info   tgemu.BotInfo
	secret string
}

func (e *botEnv) hookedBot(t *testing.T, tenantID uuid.UUID, name string) hookedBot {
	t.Helper()
	b, info := e.register(t, tenantID, name)
	calls := e.emu.Calls(info.ID, "setWebhook")
	if len(calls) == 0 {
		t.Fatal("no setWebhook call")
	}
	return hookedBot{Bot: b, info: info, secret: calls[len(calls)-1].Params["secret_token"]}
}

// eventCount counts the stored events of bot.
func (e *botEnv) eventCount(t *testing.T, botID uuid.UUID) int {
	t.Helper()
	var n int
	if err := e.db.NewRaw("SELECT count(*) FROM webhook_events WHERE bot_id = ?", botID).Scan(context.Background(), &n); err != nil {
		t.Fatal(err)
	}
	return n
}

// event returns the stored event of (bot, updateID).
func (e *botEnv) event(t *testing.T, botID uuid.UUID, updateID int64) telegram.WebhookEvent {
	t.Helper()
	var ev telegram.WebhookEvent
	if err := e.db.NewSelect().Model(&ev).Where("bot_id = ?", botID).Where("update_id = ?", updateID).Scan(context.Background()); err != nil {
		t.Fatalf("event %d: %v", updateID, err)
	}
	return ev
}

// updateTask returns the state of event id's telegram:update task ("" when there is none).
func (e *botEnv) updateTask(t *testing.T, eventID int64) string {
	t.Helper()
	info, err := e.insp.GetTaskInfo(telegram.QueueUpdates, fmt.Sprintf("%s:%d", telegram.TypeUpdate, eventID))
	if err != nil {
		return ""
	}
	return info.State.String()
}

func textUpdate(updateID int64, text string) []byte {
	return []byte(fmt.Sprintf(`{"update_id":%d,"message":{"message_id":1,"date":%d,"chat":{"id":42,"type":"private","first_name":"Ann"},"from":{"id":42,"is_bot":false,"first_name":"Ann"},"text":%q}}`,
		updateID, time.Now().Unix(), text))
}

func TestService_Ingest(t *testing.T) {
	e := newBotEnv(t)
	ctx := context.Background()
	tn := e.tenant(t, "acme")
	b := e.hookedBot(t, tn, "Shop")

	t.Run("401", func(t *testing.T) {
		for _, secret := range []string{"", "wrong", b.secret + "x", strings.ToUpper(b.secret)} {
			err := e.svc.Ingest(ctx, b.ID, secret, textUpdate(1, "hi"))
			wantErr(t, err, telegram.ErrBadSecret, http.StatusUnauthorized)
		}
		if n := e.eventCount(t, b.ID); n != 0 {
			t.Fatalf("%d events stored with a bad secret", n)
		}
	})

	t.Run("404", func(t *testing.T) {
		err := e.svc.Ingest(ctx, uuid.New(), b.secret, textUpdate(1, "hi"))
		wantErr(t, err, telegram.ErrBotNotFound, http.StatusNotFound)
	})

	t.Run("400", func(t *testing.T) {
		for _, body := range []string{
			``, `not json`, `[]`, `null`, `"x"`, `{}`, `{"update_id":0}`, `{"update_id":-4}`,
			`{"update_id":"5"}`, `{"update_id":1.5}`, `{"update_id":1e3}`, `{"update_id":null}`,
			`{"update_id":99999999999999999999}`, `{"update_id":7,"message":{}`, `{"update_id":8} x`,
			`{"update_id":9,"message":{"text":"\u0000"}}`,
		} {
			t.Run(body, func(t *testing.T) {
				err := e.svc.Ingest(ctx, b.ID, b.secret, []byte(body))
				wantErr(t, err, apperr.ErrMalformed, http.StatusBadRequest)
			})
		}
		if n := e.eventCount(t, b.ID); n != 0 {
			t.Fatalf("%d malformed events stored", n)
		}
	})

	t.Run("200 stores once, enqueues nothing", func(t *testing.T) {
		body := textUpdate(100, "hello")
		for range 3 {
			if err := e.svc.Ingest(ctx, b.ID, b.secret, body); err != nil {
				t.Fatal(err)
			}
		}
		if n := e.eventCount(t, b.ID); n != 1 {
			t.Fatalf("events = %d, want 1", n)
		}
		ev := e.event(t, b.ID, 100)
		if ev.TenantID != tn || ev.UpdateType != "message" || !ev.ProcessedAt.IsZero() {
			t.Fatalf("event = %+v", ev)
		}
		var payload map[string]any
		if err := json.Unmarshal(ev.Payload, &payload); err != nil || payload["message"].(map[string]any)["text"] != "hello" {
			t.Fatalf("payload = %s (%v)", ev.Payload, err)
		}
		// The stored events are the queue: no telegram:update task.
		if st := e.updateTask(t, ev.ID); st != "" {
			t.Fatalf("task %s enqueued", st)
		}
		// Once processed, a redelivery is acknowledged and changes nothing.
		if _, err := e.svc.ProcessPending(ctx); err != nil {
			t.Fatal(err)
		}
		processed := e.event(t, b.ID, 100)
		if err := e.svc.Ingest(ctx, b.ID, b.secret, body); err != nil {
			t.Fatal(err)
		}
		if again := e.event(t, b.ID, 100); !again.ProcessedAt.Equal(processed.ProcessedAt) || e.eventCount(t, b.ID) != 1 {
			t.Fatalf("redelivery changed the event: %+v", again)
		}
	})

	t.Run("update types", func(t *testing.T) {
		tests := []struct {
			body, want string
		}{
			{`{"update_id":201,"edited_message":{"message_id":1,"date":1,"chat":{"id":1,"type":"private"}}}`, "edited_message"},
			{`{"update_id":202,"callback_query":{"id":"q","from":{"id":1,"is_bot":false,"first_name":"A"},"chat_instance":"c"}}`, "callback_query"},
			{`{"update_id":203,"my_chat_member":{}}`, "my_chat_member"},
			{`{"update_id":204,"poll_answer":{}}`, "poll_answer"},
			{`{"update_id":205,"some_future_update":{}}`, telegram.UpdateTypeUnknown},
		}
		for _, tc := range tests {
			if err := e.svc.Ingest(ctx, b.ID, b.secret, []byte(tc.body)); err != nil {
				t.Fatalf("%s: %v", tc.want, err)
			}
			var head struct {
				UpdateID int64 `json:"update_id"`
			}
			_ = json.Unmarshal([]byte(tc.body), &head)
			if got := e.event(t, b.ID, head.UpdateID).UpdateType; got != tc.want {
				t.Errorf("update_type = %q, want %q", got, tc.want)
			}
		}
	})

	t.Run("503 PostgreSQL down", func(t *testing.T) {
		down, err := database.Open(closedURL(t, "postgres") + "/botfleet?sslmode=disable&connect_timeout=2")
		if err != nil {
			t.Fatal(err)
		}
		defer down.Close()
		svc := e.newService(t, down, e.queue)
		err = svc.Ingest(ctx, b.ID, b.secret, textUpdate(300, "hi"))
		wantErr(t, err, apperr.ErrUnavailable, http.StatusServiceUnavailable)
	})

	t.Run("200 Redis down", func(t *testing.T) {
		// The acknowledgement needs PostgreSQL only: with Redis down (no queue, no bot cache
		// subscription) the update is stored and acknowledged.
		rdb := redis.NewClient(&redis.Options{Addr: strings.TrimPrefix(closedURL(t, "tcp"), "tcp://"), MaxRetries: -1, DialTimeout: time.Second})
		defer rdb.Close()
		svc, err := telegram.New(telegram.Deps{DB: e.db, Redis: rdb, Queue: asynq.NewClientFromRedisClient(rdb),
			Contacts: contacts.New(e.db), Cfg: e.cfg, Log: discardLogger()})
		if err != nil {
			t.Fatal(err)
		}
		defer svc.Close()
		if err := svc.Ingest(ctx, b.ID, b.secret, textUpdate(400, "hi")); err != nil {
			t.Fatal(err)
		}
		if ev := e.event(t, b.ID, 400); ev.UpdateType != "message" {
			t.Fatalf("event = %+v", ev)
		}
	})
}

// TestService_IngestThroughWebhook drives Ingest the way Telegram does: the emulator delivers
// a user's message to the webhook URL registered by RegisterBot, with the secret header.
func TestService_IngestThroughWebhook(t *testing.T) {
	e := newBotEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	b := e.hookedBot(t, e.tenant(t, "acme"), "Shop")
	user := tgemu.User{ID: 5001, FirstName: "Ann", Username: "ann"}
	updateID, err := e.emu.SendCommand(b.info.ID, user, "/start")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.emu.WaitIdle(ctx, b.info.ID); err != nil {
		t.Fatal(err)
	}
	if wi := e.emu.WebhookInfo(b.info.ID); wi.LastErrorMessage != "" {
		t.Fatalf("delivery error: %+v", wi)
	}
	ev := e.event(t, b.ID, updateID)
	if ev.UpdateType != "message" || !ev.ProcessedAt.IsZero() || e.updateTask(t, ev.ID) != "" {
		t.Fatalf("event %+v, task %q", ev, e.updateTask(t, ev.ID))
	}
	// Telegram redelivers (e.g. our 200 was lost): still one event.
	if err := e.emu.Redeliver(b.info.ID, updateID); err != nil {
		t.Fatal(err)
	}
	if err := e.emu.WaitIdle(ctx, b.info.ID); err != nil {
		t.Fatal(err)
	}
	if n := e.eventCount(t, b.ID); n != 1 {
		t.Fatalf("events = %d, want 1", n)
	}
}

func TestService_ListEvents(t *testing.T) {
	e := newBotEnv(t)
	ctx := context.Background()
	tn, other := e.tenant(t, "acme"), e.tenant(t, "other")
	b1, b2 := e.hookedBot(t, tn, "One"), e.hookedBot(t, tn, "Two")
	theirs := e.hookedBot(t, other, "Theirs")
	for i := int64(1); i <= 3; i++ {
		for _, b := range []hookedBot{b1, b2, theirs} {
			if err := e.svc.Ingest(ctx, b.ID, b.secret, textUpdate(i, "hi")); err != nil {
				t.Fatal(err)
			}
		}
	}
	list := func(f telegram.EventFilter) []string {
		t.Helper()
		var out []string
		for pages := 0; ; pages++ {
			evs, next, err := e.svc.ListEvents(ctx, tn, f)
			if err != nil {
				t.Fatal(err)
			}
			for _, ev := range evs {
				if ev.TenantID != tn {
					t.Fatalf("another tenant's event %+v", ev)
				}
				name := "1"
				if ev.BotID == b2.ID {
					name = "2"
				}
				out = append(out, fmt.Sprintf("%s/%d", name, ev.UpdateID))
			}
			if next == "" || pages > 10 {
				return out
			}
			f.Cursor = next
		}
	}
	if got, want := strings.Join(list(telegram.EventFilter{Limit: 2}), " "), "2/3 1/3 2/2 1/2 2/1 1/1"; got != want {
		t.Errorf("all = %s, want %s", got, want)
	}
	if got, want := strings.Join(list(telegram.EventFilter{BotID: &b1.ID}), " "), "1/3 1/2 1/1"; got != want {
		t.Errorf("bot 1 = %s, want %s", got, want)
	}
	// Another tenant's bot answers like an unknown one: 404, not an empty page.
	for _, id := range []uuid.UUID{theirs.ID, uuid.New()} {
		_, _, err := e.svc.ListEvents(ctx, tn, telegram.EventFilter{BotID: &id})
		wantErr(t, err, telegram.ErrBotNotFound, http.StatusNotFound)
	}
	// A deleted bot of the tenant's keeps its events, and they stay listable by bot; one
	// without events is an empty page, not a 404.
	b3 := e.hookedBot(t, tn, "Three")
	for _, id := range []uuid.UUID{b2.ID, b3.ID} {
		if err := e.svc.DeleteBot(ctx, tn, id); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := strings.Join(list(telegram.EventFilter{BotID: &b2.ID}), " "), "2/3 2/2 2/1"; got != want {
		t.Errorf("deleted bot 2 = %s, want %s", got, want)
	}
	if got := list(telegram.EventFilter{BotID: &b3.ID}); len(got) != 0 {
		t.Errorf("deleted bot 3 = %v, want none", got)
	}
	_, _, err := e.svc.ListEvents(ctx, tn, telegram.EventFilter{Cursor: "zz"})
	wantErr(t, err, page.ErrBadCursor, http.StatusUnprocessableEntity)
}

func discardLogger() *slog.Logger { return testlog.Logger(nil) }

// TestService_IngestGroupCommit sends many concurrent deliveries, with duplicates and one
// row PostgreSQL refuses, while the table is locked so that they gather into multi-row
// batches; every caller must get its own row's outcome, and a nil only once its row is
// committed.
func TestService_IngestGroupCommit(t *testing.T) {
	e := newBotEnv(t)
	ctx := context.Background()
	tn := e.tenant(t, "acme")
	bots := []hookedBot{e.hookedBot(t, tn, "One"), e.hookedBot(t, tn, "Two"), e.hookedBot(t, tn, "Three")}

	// Block INSERTs on webhook_events until the requests are all waiting.
	lockTx, err := e.db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lockTx.ExecContext(ctx, "LOCK TABLE webhook_events IN SHARE MODE"); err != nil {
		t.Fatal(err)
	}
	b0, rows0, fb0 := e.svc.IngestStats()

	type call struct {
		bot      hookedBot
		updateID int64
		body     string
		poison   bool
	}
	var calls []call
	for i := range 150 {
		b := bots[i%len(bots)]
		id := int64(1000 + i)
		calls = append(calls, call{bot: b, updateID: id, body: string(textUpdate(id, fmt.Sprintf("msg %d", i)))})
		if i%10 == 0 { // the same update delivered three times at once
			calls = append(calls, calls[len(calls)-1], calls[len(calls)-1])
		}
	}
	// Valid JSON that PostgreSQL refuses (numeric overflow, a data exception): parseUpdate
	// lets it through (a \u0000 escape no longer reaches PostgreSQL), the batch fails.
	poison := call{bot: bots[1], updateID: 5000, body: `{"update_id":5000,"message":{"text":"x"},"n":1e1000000}`, poison: true}
	calls = append(calls[:70], append([]call{poison}, calls[70:]...)...)

	errs := make([]error, len(calls))
	durable := make([]bool, len(calls))
	var wg sync.WaitGroup
	for i, c := range calls {
		wg.Go(func() {
			errs[i] = e.svc.Ingest(ctx, c.bot.ID, c.bot.secret, []byte(c.body))
			if errs[i] == nil { // acknowledged: the row must be visible (committed) now
				err := e.db.NewRaw("SELECT EXISTS (SELECT 1 FROM webhook_events WHERE bot_id = ? AND update_id = ?)",
					c.bot.ID, c.updateID).Scan(ctx, &durable[i])
				if err != nil {
					t.Error(err)
				}
			}
		})
	}
	time.Sleep(300 * time.Millisecond) // let them all queue behind the lock
	if err := lockTx.Rollback(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()

	for i, c := range calls {
		if c.poison {
			wantErr(t, errs[i], apperr.ErrMalformed, http.StatusBadRequest)
			continue
		}
		if errs[i] != nil {
			t.Fatalf("call %d (update %d): %v", i, c.updateID, errs[i])
		}
		if !durable[i] {
			t.Fatalf("call %d (update %d) acknowledged before its row was committed", i, c.updateID)
		}
	}
	total := 0
	for _, b := range bots {
		total += e.eventCount(t, b.ID)
	}
	if total != 150 {
		t.Fatalf("%d events stored, want 150 (duplicates once, the refused row not at all)", total)
	}
	b1, rows1, fb1 := e.svc.IngestStats()
	batches, rows, fallbacks := b1-b0, rows1-rows0, fb1-fb0
	t.Logf("%d calls → %d INSERT batches, %d rows, %d fallbacks", len(calls), batches, rows, fallbacks)
	if batches >= int64(len(calls))/4 {
		t.Fatalf("%d batches for %d concurrent calls: no group commit", batches, len(calls))
	}
	if fallbacks != 1 {
		t.Fatalf("fallbacks = %d, want 1 (the batch with the refused row)", fallbacks)
	}

	// A lone request is written at once, in a batch of its own.
	start := time.Now()
	if err := e.svc.Ingest(ctx, bots[0].ID, bots[0].secret, textUpdate(9000, "alone")); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Fatalf("a lone Ingest took %s", d)
	}
}
