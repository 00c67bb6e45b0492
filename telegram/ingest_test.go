package telegram_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/botfleet/botfleet/internal/apperr"
	"github.com/botfleet/botfleet/internal/database"
	"github.com/botfleet/botfleet/internal/page"
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

	t.Run("200 stores once and enqueues", func(t *testing.T) {
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
		if st := e.updateTask(t, ev.ID); st != "pending" {
			t.Fatalf("task state %q, want pending", st)
		}
		pending, err := e.insp.ListPendingTasks(telegram.QueueUpdates)
		if err != nil || len(pending) != 1 {
			t.Fatalf("pending update tasks = %d, %v", len(pending), err)
		}
		// A redelivery of an unprocessed event whose task was lost enqueues it again.
		if err := e.insp.DeleteTask(telegram.QueueUpdates, pending[0].ID); err != nil {
			t.Fatal(err)
		}
		if err := e.svc.Ingest(ctx, b.ID, b.secret, body); err != nil {
			t.Fatal(err)
		}
		if st := e.updateTask(t, ev.ID); st != "pending" {
			t.Fatalf("task state after redelivery %q, want pending", st)
		}
		// Once processed, a redelivery is acknowledged and not enqueued again.
		if err := e.insp.DeleteTask(telegram.QueueUpdates, pending[0].ID); err != nil {
			t.Fatal(err)
		}
		if _, err := e.db.NewRaw("UPDATE webhook_events SET processed_at = now() WHERE id = ?", ev.ID).Exec(ctx); err != nil {
			t.Fatal(err)
		}
		if err := e.svc.Ingest(ctx, b.ID, b.secret, body); err != nil {
			t.Fatal(err)
		}
		if st := e.updateTask(t, ev.ID); st != "" {
			t.Fatalf("processed event enqueued again (%s)", st)
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

	t.Run("503 Redis down, stored, swept later", func(t *testing.T) {
		rdb := redis.NewClient(&redis.Options{Addr: strings.TrimPrefix(closedURL(t, "tcp"), "tcp://"), MaxRetries: -1, DialTimeout: time.Second})
		defer rdb.Close()
		svc := e.newService(t, e.db, asynq.NewClientFromRedisClient(rdb))
		err := svc.Ingest(ctx, b.ID, b.secret, textUpdate(400, "hi"))
		wantErr(t, err, apperr.ErrUnavailable, http.StatusServiceUnavailable)
		ev := e.event(t, b.ID, 400)
		if st := e.updateTask(t, ev.ID); st != "" {
			t.Fatalf("task %s exists", st)
		}
		// Telegram retries the delivery: with Redis back, the stored event is enqueued.
		if err := e.svc.Ingest(ctx, b.ID, b.secret, textUpdate(400, "hi")); err != nil {
			t.Fatal(err)
		}
		if st := e.updateTask(t, ev.ID); st != "pending" {
			t.Fatalf("task state %q, want pending", st)
		}
		if n := e.eventCount(t, b.ID); n < 1 {
			t.Fatal("event lost")
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
	if ev.UpdateType != "message" || e.updateTask(t, ev.ID) != "pending" {
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
	if got := list(telegram.EventFilter{BotID: &theirs.ID}); len(got) != 0 {
		t.Errorf("another tenant's bot = %v, want none", got)
	}
	_, _, err := e.svc.ListEvents(ctx, tn, telegram.EventFilter{Cursor: "zz"})
	wantErr(t, err, page.ErrBadCursor, http.StatusUnprocessableEntity)
}
